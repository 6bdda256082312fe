import type net from 'node:net';
import tls from 'node:tls';
import type { Logger } from '../logger.ts';
import { tlsVerifyError } from '../node-internals.ts';
import type { StatsRow } from '../stats.ts';
import { TLS_FAILED, TLS_HANDSHAKES, TLS_PLAINTEXT, TLS_RESUMED, TLS_TIMED_OUT } from '../stats.ts';
import type { CertificateStore } from './certificates.ts';
import { KEY_NAME_LENGTH, MAX_RECORD, readClientHello } from './client-hello.ts';
import type { ResolvedTls } from './options.ts';
import { TicketKeyReader } from './ticket-keys.ts';

/** What the acceptor needs of its loop. */
export interface AcceptorHost {
  readonly log: Logger;
  readonly stats: StatsRow;
  /** Serves a connection whose handshake finished. */
  admitSecure(socket: tls.TLSSocket): void;
}

/** Handshakes still running are checked for their deadline this often (at most). */
const SWEEP_MS = 250;

/** A connection from accept to the end of its handshake. */
interface Handshake {
  raw: net.Socket;
  socket: tls.TLSSocket | null;
  /** ClientHello bytes read so far (before OpenSSL gets them). */
  head: Buffer | null;
  deadline: number;
}

const kHandshake = Symbol('netloom.handshake');
type PeekSocket = net.Socket & { [kHandshake]: Handshake; [kAcceptor]: TlsAcceptor };
const kAcceptor = Symbol('netloom.acceptor');

function onPeekData(this: PeekSocket, chunk: Buffer): void {
  this[kAcceptor].peeked(this[kHandshake], chunk);
}
function onPeekEnd(this: PeekSocket): void {
  this[kAcceptor].fail(this[kHandshake], null);
}
function onPeekError(this: PeekSocket, err: Error): void {
  this[kAcceptor].fail(this[kHandshake], err);
}

/**
 * A loop's TLS handshakes: reads the ClientHello first (plaintext and garbage are closed before OpenSSL sees
 * them; a ticket goes to the context holding its key), runs the handshake under a deadline, picks the
 * certificate by SNI, and hands the connection to the loop once it is secure. Loop thread only.
 */
export class TlsAcceptor {
  private readonly host: AcceptorHost;
  private readonly tls: ResolvedTls;
  private readonly store: CertificateStore;
  private readonly keys: TicketKeyReader;
  private current!: tls.SecureContext;
  private previous!: tls.SecureContext;
  /** Handshakes in progress, oldest first (one timeout for all, so insertion order is deadline order). */
  private readonly pending = new Set<Handshake>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private readonly sniCallback: (
    name: string,
    cb: (err: Error | null, ctx?: tls.SecureContext) => void,
  ) => void;
  private closed = false;
  /** Whether any server name could get another certificate than the default (else no SNI callback). */
  private readonly sniNeeded: boolean;
  /** The ALPN list in its wire format, made once (Node would convert an array for every socket). */
  private readonly alpnWire: Buffer | undefined;

  constructor(host: AcceptorHost, options: ResolvedTls, store: CertificateStore, keys: SharedArrayBuffer) {
    this.host = host;
    this.tls = options;
    this.store = store;
    this.keys = new TicketKeyReader(keys);
    this.rebuild();
    store.onDefaultChange = () => this.rebuild();
    this.sniCallback = (name, cb) => this.sni(name, cb);
    this.sniNeeded =
      Object.keys(options.certificates).length > 0 ||
      options.certificateDirectory !== undefined ||
      options.certificateSource !== undefined ||
      options.unknownServername === 'refuse';
    this.alpnWire = alpnWire(options.alpnProtocols);
  }

  /** Handshakes in progress (they count toward `maxConnections`). */
  get handshaking(): number {
    return this.pending.size;
  }

  /** New session contexts (the default certificate changed): handshakes already running keep theirs. */
  private rebuild(): void {
    this.current = this.store.sessionContext();
    this.previous = this.store.sessionContext();
    const seconds = Math.min(Math.ceil((2 * this.tls.ticketKeyRotation) / 1000), 7 * 86400);
    for (const ctx of [this.current, this.previous]) {
      const native = ctx.context as {
        setSessionIdContext?(id: string): void;
        setSessionTimeout?(s: number): void;
      };
      native.setSessionIdContext?.('netloom');
      native.setSessionTimeout?.(seconds);
    }
    this.keys.refresh();
    this.applyKeys();
  }

  private applyKeys(): void {
    (this.current.context as { setTicketKeys(k: Buffer): void }).setTicketKeys(this.keys.current);
    (this.previous.context as { setTicketKeys(k: Buffer): void }).setTicketKeys(this.keys.previous);
  }

  /** Starts the handshake of an accepted socket (paused, not read yet). */
  accept(raw: net.Socket): void {
    if (this.closed) {
      raw.destroy();
      return;
    }
    const hs: Handshake = { raw, socket: null, head: null, deadline: Date.now() + this.tls.handshakeTimeout };
    this.pending.add(hs);
    const peek = raw as PeekSocket;
    peek[kHandshake] = hs;
    peek[kAcceptor] = this;
    raw.on('data', onPeekData);
    raw.on('end', onPeekEnd);
    raw.on('error', onPeekError);
    raw.resume();
    if (this.sweepTimer === null) {
      this.sweepTimer = setInterval(() => this.sweep(), Math.min(SWEEP_MS, this.tls.handshakeTimeout));
      this.sweepTimer.unref();
    }
  }

  /** @internal ClientHello bytes arrived. */
  peeked(hs: Handshake, chunk: Buffer): void {
    const head = hs.head === null ? chunk : Buffer.concat([hs.head, chunk]);
    const info = readClientHello(head);
    if (info.kind === 'more' && head.length < MAX_RECORD) {
      hs.head = head;
      return;
    }
    const raw = hs.raw;
    raw.off('data', onPeekData);
    raw.off('end', onPeekEnd);
    raw.off('error', onPeekError);
    if (info.kind !== 'tls') {
      this.host.stats.add(TLS_PLAINTEXT, 1);
      this.drop(hs);
      return;
    }
    // A ClientHello split over records may name a server beyond the first: OpenSSL judges that one.
    if (info.complete && info.servername === '' && this.tls.unknownServername === 'refuse') {
      this.host.stats.add(TLS_FAILED, 1);
      this.drop(hs);
      return;
    }
    raw.pause();
    // OpenSSL reads these from the socket's buffer first (TLSSocket feeds what a wrapped socket holds).
    raw.unshift(head);
    if (this.keys.refresh()) this.applyKeys();
    const name = info.ticketKeyName;
    const ctx = name !== null && equalKeyName(name, this.keys.previous) ? this.previous : this.current;
    const cc = this.tls.clientCertificates;
    const socket = new tls.TLSSocket(raw, {
      isServer: true,
      secureContext: ctx,
      // Without named certificates every name gets the default: no callback into JavaScript per handshake.
      SNICallback: this.sniNeeded ? this.sniCallback : undefined,
      ALPNProtocols: this.alpnWire,
      requestCert: cc !== undefined,
      rejectUnauthorized: cc !== undefined && cc.required !== false,
    });
    hs.socket = socket;
    socket.once('secure', () => this.secured(hs));
    socket.on('error', (err) => this.fail(hs, err));
    socket.once('close', () => this.fail(hs, null));
  }

  private sni(name: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void {
    const found = this.store.lookup(name.toLowerCase());
    if (found === null || !(found instanceof Promise)) {
      this.answerSni(found, cb);
      return;
    }
    found.then(
      (ctx) => this.answerSni(ctx, cb),
      (err: Error) => cb(err),
    );
  }

  private answerSni(
    ctx: tls.SecureContext | null,
    cb: (err: Error | null, ctx?: tls.SecureContext) => void,
  ): void {
    if (ctx !== null) cb(null, ctx);
    else if (this.tls.unknownServername === 'default' && this.store.defaultContext !== null)
      cb(null, undefined);
    else cb(new Error('no certificate for this server name'));
  }

  private secured(hs: Handshake): void {
    if (!this.pending.delete(hs)) return;
    const socket = hs.socket!;
    socket.removeAllListeners('error');
    socket.removeAllListeners('close');
    const stats = this.host.stats;
    if (this.tls.unknownServername === 'refuse' && !socket.servername) {
      // No server name at all (the SNI callback never ran): refused like an unknown one.
      stats.add(TLS_FAILED, 1);
      socket.destroy();
      return;
    }
    const cc = this.tls.clientCertificates;
    if (cc !== undefined) {
      // What tls.Server does on 'secure': the verdict on the client's certificate, refused when required.
      const err = tlsVerifyError(socket);
      if (err === null) socket.authorized = true;
      else {
        socket.authorized = false;
        socket.authorizationError = ((err as NodeJS.ErrnoException)?.code ?? String(err)) as unknown as Error;
        if (cc.required !== false) {
          stats.add(TLS_FAILED, 1);
          this.host.log.debug('tls: client certificate refused', {
            error: String(socket.authorizationError),
          });
          socket.destroy();
          return;
        }
      }
    }
    stats.add(TLS_HANDSHAKES, 1);
    if (socket.isSessionReused()) stats.add(TLS_RESUMED, 1);
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.host.admitSecure(socket);
  }

  /** @internal The handshake failed (`err`), or the peer left before it finished (`err` null). */
  fail(hs: Handshake, err: Error | null): void {
    if (!this.pending.has(hs)) return;
    this.host.stats.add(TLS_FAILED, 1);
    if (err !== null) this.host.log.debug('tls: handshake failed', { error: err.message });
    this.drop(hs);
  }

  private drop(hs: Handshake): void {
    this.pending.delete(hs);
    (hs.socket ?? hs.raw).destroy();
    hs.raw.destroy();
  }

  /** Closes handshakes past their deadline. */
  private sweep(): void {
    const now = Date.now();
    for (const hs of this.pending) {
      if (hs.deadline > now) break;
      this.host.stats.add(TLS_TIMED_OUT, 1);
      this.drop(hs);
    }
    if (this.pending.size === 0 && this.sweepTimer !== null) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = null;
    }
  }

  /** Re-reads every certificate (see `CertificateStore.reload`); the problems found, in words. */
  reload(): Promise<string[]> {
    return this.store.reload();
  }

  /**
   * Replaced by an acceptor with new settings: handshakes in progress finish here (their deadline still
   * holds), and the certificates stop being watched.
   */
  retire(): void {
    this.store.dispose();
  }

  /** The loop stops: handshakes in progress are closed, nothing new is accepted. */
  close(): void {
    this.closed = true;
    for (const hs of [...this.pending]) this.drop(hs);
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    this.store.dispose();
  }
}

/** ALPN protocol names as the TLS extension writes them: each prefixed with its length (RFC 7301 §3.1). */
function alpnWire(protocols: readonly string[]): Buffer | undefined {
  if (protocols.length === 0) return undefined;
  return Buffer.concat(
    protocols.map((p) => Buffer.concat([Buffer.from([Buffer.byteLength(p)]), Buffer.from(p)])),
  );
}

function equalKeyName(name: Uint8Array, keys: Buffer): boolean {
  for (let i = 0; i < KEY_NAME_LENGTH; i++) if (name[i] !== keys[i]) return false;
  return true;
}
