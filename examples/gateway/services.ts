// Demo upstream services for the reference gateway: small netloom HTTP servers on ports of their own,
// answering JSON that says which instance served the request and what it received.
import { type Engine, serve } from 'netloom';
import { server } from 'netloom/http1';

export interface DemoService {
  name: string;
  port: number;
}

export async function startServices(services: readonly DemoService[]): Promise<Engine[]> {
  const engines: Engine[] = [];
  for (const { name, port } of services) {
    const handler = server(async (req, res) => {
      if (req.path === '/health') return res.end('ok');
      const body = await req.text();
      res.json({
        service: name,
        instance: `${name}@${port}`,
        method: req.method,
        path: req.target,
        requestId: req.header('x-request-id') ?? null,
        traceparent: req.header('traceparent') ?? null,
        forwardedFor: req.header('x-forwarded-for') ?? null,
        body: body.length > 0 ? body : undefined,
      });
    });
    engines.push(await serve(handler, { address: `tcp://127.0.0.1:${port}`, loops: 1 }));
  }
  return engines;
}
