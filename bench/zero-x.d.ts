// The part of 0x's programmatic API bench/profile.ts uses (0x ships no type declarations).
declare module '0x' {
  interface ZeroXOptions {
    /** The node arguments of the process to profile (flags, then the script and its arguments). */
    argv: string[];
    workingDir: string;
    outputDir: string;
    /** A shell command run once the process listens; when it exits, the process is stopped and profiled. */
    onPort?: string;
    open?: boolean;
    title?: string;
    pathToNodeBinary?: string;
  }
  /** Profiles, writes the flamegraph, and resolves with its file URL. */
  export default function zeroEks(options: ZeroXOptions): Promise<string>;
}
