/**
 * The route matcher: a host table over segment radix trees, compiled once per configuration. Matching a
 * request walks the path's segments once (static children, then a parameter child) and keeps the most
 * specific candidate, so its cost does not grow with the number of routes.
 *
 * Specificity, most specific first: a full-path match (exact, or a pattern whose parameters cover the whole
 * path) before a prefix match; then more segments; then more static segments; then more constraints
 * (methods, headers); then declaration order. Hosts: an exact host, then `*.suffix` wildcards (longest first),
 * then routes for any host; a host table without a matching route falls through to the next.
 */

/** What a route needs for matching; `T` is whatever the caller attaches (its runtime route). */
export interface RouteSpec<T> {
  /** Host: `name`, `name:port`, `*.suffix`, `*` or undefined (any host). */
  host?: string | undefined;
  /** Path pattern: `/a/b`, `/users/:id`, `/` for everything (with prefix). */
  path: string;
  pathType: 'exact' | 'prefix';
  methods?: readonly string[] | undefined;
  /** Header constraints, values compared exactly (names case-insensitive). */
  headers?: Readonly<Record<string, string>> | undefined;
  value: T;
}

/** Where header constraints are looked up (the HTTP request). */
export interface HeaderSource {
  header(name: string): string | undefined;
}

/** A successful match. */
export interface RouteMatch<T> {
  value: T;
  /** `:name` segment values, or null when the pattern has none. */
  params: Record<string, string> | null;
}

interface Compiled<T> {
  value: T;
  full: boolean;
  depth: number;
  statics: number;
  constraints: number;
  order: number;
  methods: ReadonlySet<string> | null;
  headers: [string, string][] | null;
  paramNames: string[];
}

class TreeNode<T> {
  readonly statics = new Map<string, TreeNode<T>>();
  param: TreeNode<T> | null = null;
  readonly exact: Compiled<T>[] = [];
  readonly prefix: Compiled<T>[] = [];
}

/** Segments of a route pattern; a trailing slash is dropped (requests match with or without one). */
function segmentsOf(path: string): string[] {
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  return trimmed === '/' ? [] : trimmed.slice(1).split('/');
}

/** Whether `a` is more specific than `b`. */
function better<T>(a: Compiled<T>, b: Compiled<T> | null): boolean {
  if (b === null) return true;
  if (a.full !== b.full) return a.full;
  if (a.depth !== b.depth) return a.depth > b.depth;
  if (a.statics !== b.statics) return a.statics > b.statics;
  if (a.constraints !== b.constraints) return a.constraints > b.constraints;
  return a.order < b.order;
}

/** One tree of routes (for one host, a host wildcard, or any host). */
class RouteTree<T> {
  private readonly root = new TreeNode<T>();

  add(spec: RouteSpec<T>, order: number): void {
    const segs = segmentsOf(spec.path);
    let node = this.root;
    const paramNames: string[] = [];
    let statics = 0;
    for (const seg of segs) {
      if (seg.startsWith(':')) {
        paramNames.push(seg.slice(1));
        if (node.param === null) node.param = new TreeNode<T>();
        node = node.param;
      } else {
        statics++;
        let next = node.statics.get(seg);
        if (next === undefined) {
          next = new TreeNode<T>();
          node.statics.set(seg, next);
        }
        node = next;
      }
    }
    const headers = spec.headers
      ? Object.entries(spec.headers).map(([k, v]) => [k.toLowerCase(), v] as [string, string])
      : null;
    const compiled: Compiled<T> = {
      value: spec.value,
      full: spec.pathType === 'exact',
      depth: segs.length,
      statics,
      constraints: (spec.methods ? 1 : 0) + (headers?.length ?? 0),
      order,
      methods: spec.methods ? new Set(spec.methods) : null,
      headers,
      paramNames,
    };
    (spec.pathType === 'exact' ? node.exact : node.prefix).push(compiled);
  }

  // Scratch state of the current match: one loop thread, no re-entrancy, so nothing is allocated per request.
  private best: Compiled<T> | null = null;
  private values: string[] | null = null;
  private readonly stack: string[] = [];

  match(path: string, method: string, headers: HeaderSource): RouteMatch<T> | null {
    this.best = null;
    this.values = null;
    this.visit(this.root, path, path === '/' ? path.length : 1, method, headers);
    const best = this.best as Compiled<T> | null;
    if (best === null) return null;
    let params: Record<string, string> | null = null;
    if (best.paramNames.length > 0 && this.values !== null) {
      params = {};
      for (let i = 0; i < best.paramNames.length; i++) params[best.paramNames[i]!] = this.values[i] ?? '';
    }
    return { value: best.value, params };
  }

  private consider(list: Compiled<T>[], method: string, headers: HeaderSource): void {
    for (const c of list) {
      if (!better(c, this.best)) continue;
      if (c.methods !== null && !c.methods.has(method)) continue;
      if (c.headers !== null && !c.headers.every(([n, v]) => headers.header(n) === v)) continue;
      this.best = c;
      this.values = c.paramNames.length > 0 ? this.stack.slice(0, c.paramNames.length) : null;
    }
  }

  private visit(node: TreeNode<T>, path: string, pos: number, method: string, headers: HeaderSource): void {
    if (node.prefix.length !== 0) this.consider(node.prefix, method, headers);
    if (pos >= path.length) {
      if (node.exact.length !== 0) this.consider(node.exact, method, headers);
      return;
    }
    let end = path.indexOf('/', pos);
    if (end === -1) end = path.length;
    const seg = path.slice(pos, end);
    const next = end === path.length ? path.length : end + 1;
    const child = node.statics.get(seg);
    if (child !== undefined) this.visit(child, path, next, method, headers);
    if (node.param !== null && seg.length > 0) {
      this.stack.push(seg);
      this.visit(node.param, path, next, method, headers);
      this.stack.pop();
    }
  }
}

function splitHost(host: string): [string, string | null] {
  const h = host.toLowerCase();
  if (h.startsWith('[')) {
    const close = h.indexOf(']');
    return [h.slice(0, close + 1), h[close + 1] === ':' ? h.slice(close + 2) : null];
  }
  const colon = h.lastIndexOf(':');
  const name = colon === -1 ? h : h.slice(0, colon);
  // `admin.example.com.` is the same name, fully qualified (RFC 1034 §3.1): it must not miss its routes.
  const bare = name.endsWith('.') ? name.slice(0, -1) : name;
  return [bare, colon === -1 ? null : h.slice(colon + 1)];
}

/** The compiled routing table. */
export class Router<T> {
  private readonly exactHosts = new Map<string, RouteTree<T>>();
  private readonly wildcards: { suffix: string; tree: RouteTree<T> }[] = [];
  private readonly anyHost = new RouteTree<T>();

  constructor(specs: readonly RouteSpec<T>[]) {
    specs.forEach((spec, order) => {
      const host = spec.host?.toLowerCase();
      if (host === undefined || host === '*') {
        this.anyHost.add(spec, order);
      } else if (host.startsWith('*.')) {
        const suffix = host.slice(1);
        let w = this.wildcards.find((x) => x.suffix === suffix);
        if (w === undefined) {
          w = { suffix, tree: new RouteTree<T>() };
          this.wildcards.push(w);
        }
        w.tree.add(spec, order);
      } else {
        let tree = this.exactHosts.get(host);
        if (tree === undefined) {
          tree = new RouteTree<T>();
          this.exactHosts.set(host, tree);
        }
        tree.add(spec, order);
      }
    });
    this.wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
  }

  /** The best route for a request, or null. `header` looks a request header up by lower-case name. */
  match(host: string | undefined, path: string, method: string, headers: HeaderSource): RouteMatch<T> | null {
    if (host !== undefined && (this.exactHosts.size !== 0 || this.wildcards.length !== 0)) {
      const [name, port] = splitHost(host);
      const tree =
        (port !== null ? this.exactHosts.get(`${name}:${port}`) : undefined) ?? this.exactHosts.get(name);
      const m = tree?.match(path, method, headers);
      if (m) return m;
      for (const w of this.wildcards) {
        if (name.endsWith(w.suffix) && name.length > w.suffix.length) {
          const wm = w.tree.match(path, method, headers);
          if (wm) return wm;
        }
      }
    }
    return this.anyHost.match(path, method, headers);
  }
}
