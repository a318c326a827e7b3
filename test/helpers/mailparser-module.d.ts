// mailparser ships no types; the SMTP sink uses only simpleParser.
declare module 'mailparser' {
  export interface ParsedMail {
    subject?: string;
    text?: string;
    html?: string | false;
    to?: AddressObject | AddressObject[];
    from?: AddressObject;
  }
  export interface AddressObject {
    text: string;
    value: Array<{ address?: string; name?: string }>;
  }
  export function simpleParser(source: NodeJS.ReadableStream | Buffer | string): Promise<ParsedMail>;
}
