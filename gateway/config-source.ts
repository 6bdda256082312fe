import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { parseConfigText } from './config.ts';

/**
 * Where the gateway's configuration comes from. The file source ships here; an etcd or Consul watcher
 * implements the same two methods.
 */
export interface ConfigSource {
  /** Human-readable origin, for logs and the admin endpoint. */
  readonly description: string;
  /** Where the configuration's relative `plugins` paths resolve (the working directory when absent). */
  readonly directory?: string;
  /** Reads the current configuration as a plain object (validation happens after). */
  load(): Promise<unknown>;
  /** Calls `onChange` whenever the configuration may have changed; returns a function that stops watching. */
  watch(onChange: () => void): () => void;
  /** The source's own revision of the configuration `load` read last (etcd's), when it has one. */
  readonly revision?: number;
  /** The gateway put what `load` read last in force (at start, and after every reload that went through). */
  applied?(): void;
  /** What the admin endpoint's `/config` shows of the source (revision, cache, watch figures). */
  status?(): object;
}

/** A JSON or YAML file, watched for changes (editors that replace the file are handled). */
export class FileConfigSource implements ConfigSource {
  readonly path: string;
  readonly description: string;
  readonly directory: string;

  constructor(path: string) {
    this.path = resolve(path);
    this.description = `file ${this.path}`;
    this.directory = dirname(this.path);
  }

  async load(): Promise<unknown> {
    return parseConfigText(await readFile(this.path, 'utf8'), this.path);
  }

  watch(onChange: () => void): () => void {
    // Watch the directory: a rename-into-place (how most editors save) replaces the watched inode.
    const name = basename(this.path);
    let timer: NodeJS.Timeout | null = null;
    const watcher: FSWatcher = watch(dirname(this.path), (_event, file) => {
      if (file !== null && file !== name) return;
      if (timer !== null) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        onChange();
      }, 50); // one reload for the burst of events a save produces
    });
    watcher.unref();
    return () => {
      if (timer !== null) clearTimeout(timer);
      watcher.close();
    };
  }
}

/** A fixed configuration object (tests, programs that build their configuration in code). */
export class StaticConfigSource implements ConfigSource {
  readonly description = 'inline configuration';
  private value: unknown;
  private listener: (() => void) | null = null;

  constructor(value: unknown) {
    this.value = value;
  }

  async load(): Promise<unknown> {
    return structuredClone(this.value);
  }

  /** Replaces the configuration and tells the watcher. */
  set(value: unknown): void {
    this.value = value;
    this.listener?.();
  }

  watch(onChange: () => void): () => void {
    this.listener = onChange;
    return () => {
      this.listener = null;
    };
  }
}
