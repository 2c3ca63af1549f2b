"""Where the results go: the terminal, -oN, -oG, -oX files (or `-` for stdout), --json.

Like nmap, a format written to stdout (`-oX -`) replaces the normal output there.
Hosts are written as they finish; the XML and grepable files are valid at the end.
"""

from __future__ import annotations

import sys
import time

from . import output


class OutputError(OSError):
    pass


class Reporter:
    def __init__(self, opts, argv: list[str], start: float) -> None:
        self.opts, self.argv, self.start = opts, argv, start
        self.files: dict[str, object] = {}
        self.hosts = []
        self.scans: list = []
        stdout_taken = False
        for kind, path in (("normal", opts.out_normal), ("grep", opts.out_grep),
                           ("xml", opts.out_xml)):
            if not path:
                continue
            if path == "-":
                self.files[kind] = sys.stdout
                stdout_taken = True
                continue
            try:
                self.files[kind] = open(path, "w", encoding="utf-8")
            except OSError as exc:
                self.close()
                raise OutputError(f"Failed to open {kind} output file {path} for writing: "
                                  f"{exc.strerror}") from None
        self.terminal = not stdout_taken and not opts.json
        if opts.json and stdout_taken:
            self.close()
            raise OutputError("--json writes to stdout, and so does an -o file named '-'")

    def _write(self, kind: str, text: str) -> None:
        f = self.files.get(kind)
        if f is not None and text:
            f.write(text)
            f.flush()

    def _xml(self, part: str, *args) -> None:
        """One part of the -oX document. xmlout is imported only for XML or JSON output:
        xml.sax pulls in urllib and http.client, 17 ms of every start otherwise."""
        if "xml" in self.files:
            from . import xmlout
            self._write("xml", getattr(xmlout, part)(*args))

    def say(self, text: str) -> None:
        """A line of the normal output (terminal only: progress, -v chatter)."""
        if self.terminal:
            print(text, flush=True)

    def begin(self, scans: list, chosen: dict | None = None) -> None:
        self.scans = scans
        if self.terminal:
            print(output.banner(self.start), flush=True)
        header = output.file_header(self.start, self.argv)
        self._write("normal", header + "\n")
        self._write("grep", header + "\n")
        if self.opts.verbose:
            self._write("grep", output.ports_scanned(chosen or {}) + "\n")
        self._xml("xml_header", self.start, self.argv, scans, self.opts)

    def warn(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def host(self, host, port_scan: bool) -> None:
        self.hosts.append(host)
        lines = output.normal_host(host, self.opts, port_scan)
        if lines:
            text = "\n".join(lines) + "\n"
            if self.terminal:
                sys.stdout.write(text)
                sys.stdout.flush()
            self._write("normal", text)
        glines = output.grepable_host(host, self.opts, port_scan)
        if glines:
            self._write("grep", "\n".join(glines) + "\n")
        self._xml("xml_host", host, self.opts, port_scan)

    def finish(self, total: int, port_scan: bool, notes: list[str] = ()) -> None:
        end = time.time()
        elapsed = end - self.start
        up = sum(1 for h in self.hosts if h.up)
        done = f"Nmap done: {output.done_summary(total, up, elapsed)}"
        if self.terminal:
            for note in notes:
                print(note)
            print(done, flush=True)
        for note in notes:
            self._write("normal", note + "\n")
        self._write("normal", output.file_footer(end, total, up, elapsed) + "\n")
        self._write("grep", output.file_footer(end, total, up, elapsed) + "\n")
        self._xml("xml_footer", end, total, up, elapsed)
        if self.opts.json:
            from . import xmlout
            print(xmlout.json_document(self.start, end, self.argv, self.scans, self.hosts,
                                       total, self.opts, port_scan), flush=True)
        self.close()

    def close(self) -> None:
        for f in self.files.values():
            if f is not sys.stdout:
                try:
                    f.close()
                except OSError:
                    pass
        self.files = {}
