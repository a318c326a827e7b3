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

// Latencies from each response's own time (fractional ms, 2xx only, as autocannon's histogram counts them): the
// histogram keeps whole milliseconds, rounded down, which at a 20 ms login shifts a p50 by up to 5%.
const latencies: number[] = [];
const result = await new Promise<autocannon.Result>((resolve, reject) => {
  const instance = autocannon(
    {
      url: options.url,
      connections: options.connections,
      duration: options.seconds,
      method: options.method ?? 'GET',
      headers: options.headers,
      body: options.body,
      timeout: 30,
    },
    (err, done) => (err ? reject(err) : resolve(done)),
  );
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
  });
});
latencies.sort((a, b) => a - b);
const at = (p: number) =>
  latencies.length === 0
    ? 0
    : (latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] ?? 0);
const ms = (v: number) => Math.round(v * 100) / 100;

const statusCodes: Record<string, number> = {};
for (const [key, value] of Object.entries(result)) {
  if (/^\d{3}$/.test(key) && typeof value === 'number' && value > 0) statusCodes[key] = value;
}
const codes = (result as unknown as { statusCodeStats?: Record<string, { count: number }> }).statusCodeStats ?? {};
for (const [code, stat] of Object.entries(codes)) statusCodes[code] = stat.count;

process.stdout.write(
  `${JSON.stringify({
    rps: result.requests.average,
    p50: ms(at(50)),
    p99: ms(at(99)),
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    statusCodes,
  })}\n`,
);
