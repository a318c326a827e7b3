import { runGateway } from './gateway-commands.js';

/** `npm run gateway -- <command>` (or `npx tsx src/cli/gateway.ts <command>`); `--help` lists the commands. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const code = await runGateway(process.argv.slice(2), {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  readStdin,
});
// Exit at once: stdout/stderr are synchronous for files and pipes, and an idle pool timer must not hold the process.
process.exit(code);
