"""The command line: parse, call the library, format. Errors become one `error:` line."""
import json
import sys

import click

from .sentry import config as configmod
from .errors import ScanwatchError
from .sentry.admin.statusview import format_status

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
MODE_CHOICES = click.Choice(["classic", "stealth", "advanced"])
# PortSentry's one-word mode flags -> (protocol, mode)
MODE_FLAGS = {"tcp": ("TCP", "classic"), "stcp": ("TCP", "stealth"), "atcp": ("TCP", "advanced"),
              "udp": ("UDP", "classic"), "sudp": ("UDP", "stealth"), "audp": ("UDP", "advanced")}


def _load(path, **overrides):
    return configmod.load(path, {k: v for k, v in overrides.items() if v is not None})


def _config_option(f):
    return click.option("-c", "--config", "config_path", type=click.Path(dir_okay=True),
                        help="portsentry.conf-style file (default: embedded defaults).")(f)


def _run_dir_option(f):
    return click.option("--run-dir", help="Override RUN_DIR (where the control socket is).")(f)


def _block_state_options(f):
    """Where blocks are recorded, for unblock/flush when no daemon is running."""
    for name, key in (("--nft-table", "NFT_TABLE"), ("--hosts-deny", "HOSTS_DENY_FILE"),
                      ("--state-dir", "STATE_DIR")):
        f = click.option(name, help=f"Override {key}.")(f)
    return f


@click.group(context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="scanwatch", prog_name="scanwatch")
@click.pass_context
def cli(ctx, debug):
    """scanwatch: PortSentry's stealth scan detection on eBPF XDP, blocking in nftables
    and hosts.deny."""
    ctx.obj = {"debug": debug}


@cli.command(context_settings=CONTEXT)
@_config_option
@click.option("-tcp", "flag_tcp", is_flag=True, help="Classic TCP mode: bind TCP_PORTS.")
@click.option("-stcp", "flag_stcp", is_flag=True, help="Stealth TCP mode: watch TCP_PORTS in XDP.")
@click.option("-atcp", "flag_atcp", is_flag=True,
              help="Advanced TCP mode: every port below ADVANCED_PORTS_TCP without a listener.")
@click.option("-udp", "flag_udp", is_flag=True, help="Classic UDP mode: bind UDP_PORTS.")
@click.option("-sudp", "flag_sudp", is_flag=True, help="Stealth UDP mode: watch UDP_PORTS in XDP.")
@click.option("-audp", "flag_audp", is_flag=True,
              help="Advanced UDP mode: every port below ADVANCED_PORTS_UDP without a socket.")
@click.option("--tcp-mode", type=MODE_CHOICES, help="TCP mode, long form of -tcp/-stcp/-atcp.")
@click.option("--udp-mode", type=MODE_CHOICES, help="UDP mode, long form of -udp/-sudp/-audp.")
@click.option("-i", "--interface", "interfaces", multiple=True,
              help="Watch this interface (repeatable; default: every interface that is up, "
                   "has an address and is not loopback).")
@click.option("--dry-run", is_flag=True, help="Detect and log, but block nothing.")
@click.option("--state-dir", help="Override STATE_DIR.")
@_run_dir_option
@click.option("--hosts-deny", help="Override HOSTS_DENY_FILE.")
@click.option("--ignore-file", help="Override IGNORE_FILE.")
@click.option("--history-file", help="Override HISTORY_FILE.")
@click.option("--blocked-file", help="Override BLOCKED_FILE (`.stcp`/`.sudp` is appended).")
@click.option("--nft-table", help="Override NFT_TABLE.")
def run(config_path, tcp_mode, udp_mode, interfaces, dry_run, state_dir, run_dir,
        hosts_deny, ignore_file, history_file, blocked_file, nft_table, **flags):
    """Run the sentry in the foreground until SIGTERM or Ctrl-C.

    One TCP mode and one UDP mode run together, in any combination (PortSentry needs a
    process for each). Without a mode option both stealth modes run, as `-stcp -sudp`.
    """
    chosen = {"TCP": [tcp_mode] if tcp_mode else [], "UDP": [udp_mode] if udp_mode else []}
    for name, on in flags.items():
        if on:
            proto, mode = MODE_FLAGS[name[len("flag_"):]]
            chosen[proto].append(mode)
    for proto, modes in chosen.items():
        if len(set(modes)) > 1:
            raise click.UsageError(f"one {proto} mode at a time, not {' and '.join(modes)}")
    tcp, udp = (chosen[p][0] if chosen[p] else None for p in ("TCP", "UDP"))
    if not tcp and not udp:
        tcp = udp = "stealth"
    cfg = _load(config_path, STATE_DIR=state_dir, RUN_DIR=run_dir, HOSTS_DENY_FILE=hosts_deny,
                IGNORE_FILE=ignore_file, HISTORY_FILE=history_file, BLOCKED_FILE=blocked_file,
                NFT_TABLE=nft_table)
    from .sentry.daemon import Daemon
    from .sentry.respond.records import make_logger
    log = make_logger()
    for w in cfg.warnings:
        log.warning("warning: %s", w)
    overrides = {k: v for k, v in dict(
        STATE_DIR=state_dir, RUN_DIR=run_dir, HOSTS_DENY_FILE=hosts_deny, IGNORE_FILE=ignore_file,
        HISTORY_FILE=history_file, BLOCKED_FILE=blocked_file, NFT_TABLE=nft_table).items()
        if v is not None}
    daemon = Daemon(cfg, tcp_mode=tcp, udp_mode=udp, interfaces=interfaces, logger=log,
                    dry_run=dry_run, overrides=overrides)
    from .sentry.fleet.wire import attach
    attach(daemon)  # FLEET_URL: the fleet's threads start and stop with the daemon
    daemon.start()
    sys.exit(daemon.run())


@cli.command(context_settings=CONTEXT)
@_config_option
@_run_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--fleet", "fleet", is_flag=True, help="List every member of the fleet.")
def status(config_path, run_dir, as_json, fleet):
    """Show whether the daemon runs, what it watches, what it saw and whom it blocked.

    Exit status 3 when no daemon is running."""
    from .sentry.admin import control
    from .errors import NotRunning
    cfg = _load(config_path, RUN_DIR=run_dir)
    try:
        st = control.request(cfg.RUN_DIR, {"cmd": "fleet" if fleet else "status"})
        if "error" in st:
            raise ScanwatchError(st["error"])
        if fleet:
            from .sentry.admin.statusview import format_members
            click.echo(json.dumps(st, indent=2, sort_keys=True) if as_json
                       else format_members(st))
            return
    except NotRunning as err:
        click.echo(str(err))
        sys.exit(err.exit_code)
    click.echo(json.dumps(st, indent=2, sort_keys=True) if as_json else format_status(st))


@cli.command(context_settings=CONTEXT)
@_config_option
@_run_dir_option
@_block_state_options
@click.option("--fleet", "fleet", is_flag=True, help="Lift it on every member of the fleet.")
@click.argument("addr")
def unblock(config_path, run_dir, state_dir, hosts_deny, nft_table, fleet, addr):
    """Lift the block of ADDR (nftables, XDP map, hosts.deny); an IPv6 prefix block
    (2001:db8::/64) by its prefix or, with the daemon running, any address in it."""
    from .sentry.ignore import canonical
    try:
        addr = str(canonical(addr))
    except ValueError:
        raise ScanwatchError(f"{addr!r} is not an IPv4 or IPv6 address or IPv6 prefix") from None
    from .sentry.admin import offline
    cfg = _load(config_path, RUN_DIR=run_dir, STATE_DIR=state_dir, HOSTS_DENY_FILE=hosts_deny,
                NFT_TABLE=nft_table)
    if fleet:
        from .sentry.admin import control
        reply = control.request(cfg.RUN_DIR, {"cmd": "unblock", "addr": addr, "fleet": True})
        if "error" in reply:
            raise ScanwatchError(reply["error"])
        click.echo(f"{addr} unblocked here; the fleet lifts it on every member")
        return
    was = offline.unblock(cfg, addr)
    click.echo(f"{addr} unblocked" if was else f"{addr} was not blocked by scanwatch")


@cli.command(context_settings=CONTEXT)
@_config_option
@_run_dir_option
@_block_state_options
def flush(config_path, run_dir, state_dir, hosts_deny, nft_table):
    """Lift every block: scanwatch's nft table and only the hosts.deny lines it wrote.

    With a daemon running, it empties the sets and keeps the table it needs."""
    from .sentry.admin import offline
    cfg = _load(config_path, RUN_DIR=run_dir, STATE_DIR=state_dir, HOSTS_DENY_FILE=hosts_deny,
                NFT_TABLE=nft_table)
    click.echo(offline.flush(cfg))


@cli.command(context_settings=CONTEXT)
@_config_option
@_run_dir_option
@click.option("--once", is_flag=True,
              help="Print one frame as plain text and exit (the default when stdout "
                   "is not a terminal).")
@click.option("-d", "--delay", default=1.0, show_default=True, type=click.FloatRange(0.2, 60),
              help="Seconds between refreshes.")
def top(config_path, run_dir, once, delay):
    """Live view of the running daemon, like htop: packets/s by scan type, sources by
    activity, latest reports.

    Keys: s sort, / filter by address, up/down (or j/k) select, u unblock (asks), q quit."""
    from .sentry.admin import top as topview
    from .errors import NotRunning
    cfg = _load(config_path, RUN_DIR=run_dir)
    live = topview.Live(cfg.RUN_DIR)
    try:
        snap = live.fetch()
    except NotRunning as err:
        click.echo(str(err))
        sys.exit(err.exit_code)
    if once or not sys.stdout.isatty() or not sys.stdin.isatty():
        click.echo(topview.plain(snap).rstrip("\n"))
        return
    sys.exit(topview.run(live.fetch, live.unblock, delay))


@cli.command(context_settings=CONTEXT)
@_config_option
@click.option("--since", default="24h", show_default=True,
              help="How far back: 90m, 24h, 7d, 52w.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Write one self-contained HTML page with every chart.")
@click.option("--png", "png_dir", type=click.Path(file_okay=False),
              help="Write one PNG per chart into this directory.")
@click.option("--events", type=click.Path(dir_okay=False),
              help="events.jsonl to read (default: STATE_DIR/events.jsonl).")
@click.option("--history", multiple=True, type=click.Path(dir_okay=False),
              help="History file(s) to read, ours or PortSentry's (repeatable; default: "
                   "HISTORY_FILE when there is no events file).")
@click.option("--state-dir", help="Override STATE_DIR.")
@click.option("--top", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="Sources and ports listed.")
def report(config_path, since, html_path, png_dir, events, history, state_dir, top):
    """The records of the last day (or --since) in numbers, or in charts with --html/--png.

    Reads events.jsonl and the history file; a plain PortSentry history file works too
    (`--history /var/lib/portsentry/portsentry.history`)."""
    from .sentry.admin import summary as rep
    seconds = rep.parse_since(since)
    cfg = _load(config_path, STATE_DIR=state_dir)
    events, history = rep.record_files(cfg, events, history)
    summary = rep.load(events, history, seconds)
    if not html_path and not png_dir:
        click.echo(rep.text_summary(summary, top))
        return
    from .sentry.admin import charts
    if png_dir:
        for path in charts.write_pngs(summary, png_dir):
            click.echo(path)
    if html_path:
        click.echo(charts.write_html(summary, html_path, top))


@cli.group(context_settings=CONTEXT)
def config():
    """Check or show configuration."""


@config.command("check", context_settings=CONTEXT)
@_config_option
def config_check(config_path):
    """Validate a config file and the ignore file it names; exit 2 on the first error."""
    from .sentry import ignore
    cfg = _load(config_path)
    for w in cfg.warnings:
        click.echo(f"warning: {w}", err=True)
    nets = ignore.load(cfg.IGNORE_FILE)
    click.echo(f"{config_path or '(embedded defaults)'}: OK "
               f"({len(cfg.TCP_PORTS)} TCP ports, {len(cfg.UDP_PORTS)} UDP ports, "
               f"{len(nets)} ignore entries from {cfg.IGNORE_FILE})")


@config.command("show", context_settings=CONTEXT)
@_config_option
def config_show(config_path):
    """Print every setting with its value, default and meaning."""
    from .sentry.defaults import SETTINGS
    cfg = _load(config_path)
    for s in SETTINGS:
        value = cfg.values[s.name]
        if isinstance(value, tuple):
            value = ",".join(map(str, value))
        click.echo(f'# {s.doc} ({s.kind}; default "{s.default}")')
        click.echo(f'{s.name}="{value}"')


TOPICS = {
    "modes": """One TCP mode and one UDP mode run in one daemon, in any combination.

  -tcp  / --tcp-mode classic    bind TCP_PORTS; a completed handshake is the evidence
  -stcp / --tcp-mode stealth    watch TCP_PORTS in XDP (SYN, FIN, NULL, XMAS, ACK/Window,
                                Maimon, odd flags, fragments)
  -atcp / --tcp-mode advanced   every TCP port below ADVANCED_PORTS_TCP without a listener,
                                except ADVANCED_EXCLUDE_TCP
  -udp, -sudp, -audp            the same for UDP (UDP_PORTS, ADVANCED_PORTS_UDP, ...)

Stealth and advanced modes also run the sweep detector: SWEEP_PORTS distinct closed ports
within SWEEP_WINDOW seconds. Without a mode option, -stcp -sudp run.""",
    "files": """Files scanwatch reads and writes (defaults; `scanwatch help config` for keys):

  /etc/scanwatch/scanwatch.conf    portsentry.conf syntax (`-c FILE`; any portsentry.conf works)
  IGNORE_FILE                      addresses/CIDRs never blocked (PortSentry syntax)
  HOSTS_DENY_FILE                  /etc/hosts.deny: KILL_HOSTS_DENY lines, only ours edited
  HISTORY_FILE                     every block, PortSentry's format (fail2ban's filter reads it)
  BLOCKED_FILE.<mode>              this run's blocks, per mode (.stcp, .sudp, ...)
  STATE_DIR/blocks.json, .journal  the block table, restored at start
  STATE_DIR/events.jsonl           one JSON object per event
  RUN_DIR/scanwatch.sock, .pid     control socket (status, unblock, flush) and pid""",
    "signals": """SIGTERM, SIGINT  detach the XDP programs, save the block table, exit 0
SIGHUP           re-read the config and the ignore file; blocks stay; a broken file keeps the
                 old settings and logs one error line""",
}


@cli.command("help", context_settings=CONTEXT)
@click.argument("topic", required=False)
@click.pass_context
def help_topic(ctx, topic):
    """Help on a TOPIC (config, modes, files, signals) or a COMMAND."""
    if topic is None:
        click.echo(cli.get_help(ctx.parent))
        click.echo("\nTopics: config, " + ", ".join(TOPICS) + " (`scanwatch help TOPIC`)")
    elif topic == "config":
        from .sentry.defaults import SETTINGS
        for st in SETTINGS:
            click.echo(f"{st.name} ({st.kind}, default \"{st.default}\")")
            click.echo(f"    {st.doc}")
    elif topic in TOPICS:
        click.echo(TOPICS[topic])
    elif topic in cli.commands:
        cmd = cli.commands[topic]
        with click.Context(cmd, info_name=topic, parent=ctx.parent) as sub:
            click.echo(cmd.get_help(sub))
    else:
        raise click.UsageError(f"no help topic {topic!r}; try `scanwatch help`")


@cli.command(context_settings=CONTEXT)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell):
    """Print the shell completion script: `eval "$(scanwatch completion bash)"`."""
    from click.shell_completion import get_completion_class
    comp = get_completion_class(shell)(cli, {}, "scanwatch", "_SCANWATCH_COMPLETE")
    click.echo(comp.source())


PASSTHROUGH = dict(CONTEXT, ignore_unknown_options=True, allow_extra_args=True,
                   help_option_names=[])


@cli.command(context_settings=PASSTHROUGH, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def scan(args):
    """nmap-style port scanner, with nmap's options and output (`scanwatch scan -h`)."""
    from .scan.main import main as scan_main
    sys.exit(scan_main(list(args)))


@cli.command(context_settings=PASSTHROUGH, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def lsof(args):
    """lsof-style lister of processes, sockets and files, with lsof's options and output
    (`scanwatch lsof -h`)."""
    from .lsof.main import main as lsof_main
    sys.exit(lsof_main(list(args)))


def main(argv=None):
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="scanwatch", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:  # usage mistakes: one line, like every other error
        hint = f" (see `{e.ctx.command_path} -h`)" if getattr(e, "ctx", None) else ""
        click.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(e.exit_code)
    except ScanwatchError as err:
        if debug:
            raise
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)
