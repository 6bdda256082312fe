/**
 * Active health checks of one target on one loop: a GET of the configured path every `interval`, at most
 * one in flight (a check slower than the interval delays the next, it never piles up), a result counted
 * only against the current state: `unhealthyThreshold` failures in a row mark the target unhealthy,
 * `healthyThreshold` successes in a row mark it healthy again. A checker outlives reloads that keep its
 * settings (its streak and timer carry on).
 */
import type { EventLoop, LoopTimer } from '../core/index.ts';
import { ClientConnection, type ClientResponse, clientHandler } from '../protocols/http1/index.ts';
import { Http2ClientConnection, http2ClientHandler } from '../protocols/http2/index.ts';
import type { UpstreamConfig } from './config.ts';
import { Http2TargetPool } from './pool-h2.ts';
import type { UpstreamTarget } from './upstream.ts';

type CheckSettings = NonNullable<UpstreamConfig['healthCheck']>;

export class HealthChecker {
  private readonly loop: EventLoop;
  private readonly upstream: string;
  private readonly target: UpstreamTarget;
  private readonly settings: CheckSettings;
  private readonly signature: string;
  private timer: LoopTimer | null = null;
  /** A check is in flight. */
  private checking = false;
  /** Results in a row that disagree with the target's state. */
  private streak = 0;
  /** Checks started (for tests and the admin endpoint). */
  started = 0;

  constructor(loop: EventLoop, upstream: string, target: UpstreamTarget, settings: CheckSettings) {
    this.loop = loop;
    this.upstream = upstream;
    this.target = target;
    this.settings = settings;
    this.signature = JSON.stringify(settings);
  }

  /** Whether `settings` are the ones this checker runs with (a reload keeps it then). */
  sameSettings(settings: CheckSettings): boolean {
    return JSON.stringify(settings) === this.signature;
  }

  start(): void {
    if (this.timer !== null) return;
    this.timer = this.loop.every(this.settings.interval, () => this.check());
    this.check();
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  private check(): void {
    if (this.checking || this.timer === null) return;
    this.checking = true;
    this.started++;
    const t = this.target;
    const hc = this.settings;
    let status = 0;
    let settled = false;
    const settle = (ok: boolean) => {
      if (settled) return;
      settled = true;
      this.checking = false;
      if (this.timer !== null) this.result(ok);
    };
    if (t.pool instanceof Http2TargetPool) {
      this.checkHttp2(t.pool, hc, settle);
      return;
    }
    const conn = this.loop.dial<ClientConnection>(
      t.pool.address,
      clientHandler({
        onOpen: (client) => {
          client.request(
            {
              method: 'GET',
              target: hc.path,
              host: t.host,
              headers: [
                ['user-agent', 'netloom-health'],
                ['connection', 'close'],
              ],
              framing: 'none',
            },
            {
              onHead: (res: ClientResponse) => {
                status = res.status;
              },
              onBody: () => {},
              onEnd: () => {
                settle(status >= 200 && status < 400);
                client.conn.close();
              },
              onError: () => settle(false),
            },
          );
        },
        onClose: () => settle(false),
      }),
      { timeout: hc.timeout, tls: t.pool.tls },
    );
    conn.context = new ClientConnection(conn);
    conn.setDeadline(hc.timeout);
  }

  /**
   * An HTTP/2 target is checked on a connection of its own, as an HTTP/1.1 one is: a check must not wait
   * behind the requests in the pool (a busy target is not a sick one), nor take their places.
   */
  private checkHttp2(pool: Http2TargetPool, hc: CheckSettings, settle: (ok: boolean) => void): void {
    const t = this.target;
    let status = 0;
    const conn = this.loop.dial<Http2ClientConnection>(
      pool.address,
      http2ClientHandler({
        onOpen: (client) => {
          if (pool.tls !== undefined && client.conn.alpnProtocol !== 'h2') {
            client.conn.close();
            return;
          }
          try {
            const stream = client.reserve(pool.tls === undefined ? 'http' : 'https');
            stream.request(
              {
                method: 'GET',
                target: hc.path,
                host: t.host,
                headers: [['user-agent', 'netloom-health']],
                framing: 'none',
              },
              {
                onHead: (res: ClientResponse) => {
                  status = res.status;
                },
                onBody: () => {},
                onEnd: () => {
                  settle(status >= 200 && status < 400);
                  client.conn.close();
                },
                onError: () => {
                  settle(false);
                  client.conn.close();
                },
              },
            );
            stream.setDeadline(hc.timeout);
          } catch {
            settle(false);
            client.conn.close();
          }
        },
        onClose: () => settle(false),
      }),
      { timeout: hc.timeout, tls: pool.tls },
    );
    // The connection takes its client as context; the server's SETTINGS are due within the check's time.
    new Http2ClientConnection(conn).expectSettingsWithin(hc.timeout);
  }

  private result(ok: boolean): void {
    const t = this.target;
    const hc = this.settings;
    if (ok === t.healthy) {
      this.streak = 0;
      return;
    }
    // A run of results against the current state flips it once it reaches the threshold.
    if (++this.streak >= (ok ? hc.healthyThreshold : hc.unhealthyThreshold)) {
      t.healthy = ok;
      this.streak = 0;
      if (ok) t.ejectedUntil = 0;
      this.loop.log.info(ok ? 'upstream target healthy' : 'upstream target unhealthy', {
        upstream: this.upstream,
        target: t.address,
      });
    }
  }
}
