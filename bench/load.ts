import autocannon from 'autocannon';

/** The load generator, run as its own process by bench/lib.ts: one autocannon run, one JSON line on stdout. */
const options = JSON.parse(process.argv[2] ?? '{}') as {
  url: string;
  connections: number;
  seconds: number;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
};

const result = await autocannon({
  url: options.url,
  connections: options.connections,
  duration: options.seconds,
  method: options.method ?? 'GET',
  headers: options.headers,
  body: options.body,
  timeout: 30,
});

const statusCodes: Record<string, number> = {};
for (const [key, value] of Object.entries(result)) {
  if (/^\d{3}$/.test(key) && typeof value === 'number' && value > 0) statusCodes[key] = value;
}
const codes = (result as unknown as { statusCodeStats?: Record<string, { count: number }> }).statusCodeStats ?? {};
for (const [code, stat] of Object.entries(codes)) statusCodes[code] = stat.count;

process.stdout.write(
  `${JSON.stringify({
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    statusCodes,
  })}\n`,
);
