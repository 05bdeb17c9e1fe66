"""The ``lanner scan`` and ``lanner admission`` commands. Only click is imported at module
level: the posture modules are imported inside the commands, ruamel.yaml only for --fix, so a
scan of one file starts fast."""

from __future__ import annotations

import sys

import click

LEVEL_CHOICE = click.Choice(["baseline", "restricted"])
FORMAT_CHOICE = click.Choice(["text", "json", "sarif", "junit"])
FAIL_CHOICE = click.Choice(["error", "warning", "note", "none"])
_RANK = {"note": 1, "warning": 2, "error": 3, "none": 0}


def _severities(values: tuple[str, ...]) -> dict[str, str]:
    from lanner.posture.scan import all_check_ids

    known = set(all_check_ids())
    out: dict[str, str] = {}
    for v in values:
        check, sep, sev = v.partition("=")
        if not sep or sev not in ("error", "warning", "note", "off"):
            raise click.BadParameter(f"{v!r}: use CHECK=error|warning|note|off", param_hint="--severity")
        if check not in known:
            raise click.BadParameter(f"unknown check {check!r} (see docs/posture.md for the ids)",
                                     param_hint="--severity")
        out[check] = sev
    return out


@click.command("scan", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True)
@click.option("--level", type=LEVEL_CHOICE, default="restricted", show_default=True,
              help="Pod Security Standards level whose violations are errors.")
@click.option("--pss-version", default="latest", show_default=True, metavar="v1.NN|latest",
              help="Pod Security Standards policy version to apply.")
@click.option("--format", "fmt", type=FORMAT_CHOICE, default="text", show_default=True)
@click.option("--fail-on", type=FAIL_CHOICE, default="error", show_default=True,
              help="Exit 1 when a finding reaches this severity.")
@click.option("--severity", "severity", multiple=True, metavar="CHECK=error|warning|note|off",
              help="Change a check's severity, or turn it off (repeatable).")
@click.option("--fix", is_flag=True, help="Rewrite the manifests in place so they pass the level.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the report to this file instead of standard output.")
def scan_command(paths: tuple[str, ...], level: str, pss_version: str, fmt: str, fail_on: str,
                 severity: tuple[str, ...], fix: bool, output: str | None) -> None:
    """Check Kubernetes manifests (files, directories, or - for stdin) against the Pod Security
    Standards and hardening checks.

    Exit codes: 0 nothing reaches --fail-on, 1 something does, 2 unreadable input or usage error.
    """
    from lanner.posture.pss import parse_version
    from lanner.posture.scan import ScanOptions, scan_paths

    try:
        version = parse_version(pss_version)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--pss-version") from None
    opts = ScanOptions(level=level, version=version, severities=_severities(severity))  # type: ignore[arg-type]
    if fix and "-" in paths:
        raise click.UsageError("--fix rewrites files in place: it cannot fix standard input")
    result, _ = scan_paths(list(paths), opts)
    if fix:
        from lanner.posture.fix import fix_files

        fixed = fix_files(result, opts)
        for name, count in fixed.items():
            click.echo(f"fixed {name}: {count} change(s)", err=True)
        if fixed:
            result, _ = scan_paths(list(paths), opts)
    rank = _RANK[fail_on]
    if fmt == "json":
        from lanner.posture.report import to_json

        text = to_json(result)
    elif fmt == "sarif":
        from lanner.posture.sarif import to_sarif

        text = to_sarif(result)
    elif fmt == "junit":
        from lanner.posture.junit import to_junit

        text = to_junit(result, rank)
    else:
        from lanner.posture.report import to_text

        to_file = output is not None
        text = to_text(result, color=not to_file and sys.stdout.isatty())
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        click.echo(text, nl=False)
    for n in result.notes:
        click.echo(f"note: {n}", err=True)
    for err in result.errors:
        click.echo(f"error: {err}", err=True)
    if result.errors:
        sys.exit(2)
    sys.exit(1 if rank and result.worst() >= rank else 0)


@click.command("admission", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--cert", type=click.Path(dir_okay=False), default=None, help="TLS certificate (PEM).")
@click.option("--key", type=click.Path(dir_okay=False), default=None, help="TLS private key (PEM).")
@click.option("--port", type=click.IntRange(0, 65535), default=8443, show_default=True)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML: namespace → Pod Security labels, defaults, exemptions (docs/admission.md).")
@click.option("--generate-certs", "gen_dir", type=click.Path(file_okay=False), default=None,
              help="Write a self-signed tls.crt/tls.key pair into DIR for development, then serve with it.")
@click.option("--san", multiple=True, help="Extra DNS name or IP for --generate-certs (repeatable).")
@click.option("--generate-only", is_flag=True, help="With --generate-certs: write the pair and exit.")
def admission_command(cert: str | None, key: str | None, port: int, host: str, config_path: str | None,
                      gen_dir: str | None, san: tuple[str, ...], generate_only: bool) -> None:
    """Serve the validating (/validate) and mutating (/mutate) admission webhook over HTTPS."""
    from lanner.posture.admission import AdmissionConfig, ConfigError, serve
    from lanner.posture.certs import generate_self_signed

    if gen_dir:
        cert_path, key_path, ca_b64 = generate_self_signed(gen_dir, list(san))
        click.echo(f"wrote {cert_path} and {key_path}", err=True)
        click.echo(f"caBundle: {ca_b64}", err=True)
        cert, key = cert or cert_path, key or key_path
        if generate_only:
            return
    elif generate_only:
        raise click.UsageError("--generate-only needs --generate-certs DIR")
    if not cert or not key:
        raise click.UsageError("--cert and --key are required (or --generate-certs DIR)")
    try:
        config = AdmissionConfig.load(config_path) if config_path else AdmissionConfig()
    except ConfigError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    try:
        serve(host, port, cert, key, config)
    except OSError as e:
        click.echo(f"error: cannot serve on {host}:{port}: {e}", err=True)
        sys.exit(2)
