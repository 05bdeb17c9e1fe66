"""The ``lanner`` command: parses arguments and calls the library. Exit codes: 0 success,
1 findings or invalid input, 2 usage or environment error."""

from __future__ import annotations

import sys
from typing import ClassVar

import click

from lanner import __version__


class _LazyGroup(click.Group):
    """Imports a subcommand's module only when it is used, so ``lanner scan`` stays fast."""

    _lazy: ClassVar[dict[str, tuple[str, str, str]]] = {
        "rules": ("lanner.rules.commands", "rules_group", "Validate and list rules files."),
        "fields": ("lanner.rules.commands", "fields_command", "List the fields conditions can use."),
        "replay": ("lanner.rules.commands", "replay_command", "Evaluate a recorded event file."),
        "bench": ("lanner.bench", "bench_group", "Benchmarks: they print figures."),
        "scan": ("lanner.posture.cli", "scan_command", "Check pod manifests' security posture."),
        "admission": ("lanner.posture.cli", "admission_command", "Run the admission webhook."),
        "capture": ("lanner.capture", "capture_command", "Record live kernel events to a file."),
        "learn": ("lanner.learn", "learn_command", "Record what a workload runs; write an allow-list rule."),
        "run": ("lanner.run", "run_command", "Run the agent: live events, rules, alerts, metrics."),
        "config": ("lanner.run", "config_group", "Show the agent's effective configuration."),
        "doctor": ("lanner.doctor", "doctor_command", "Report what this kernel and machine allow."),
        "simulate": ("lanner.simulate.cli", "simulate_command",
                     "Perform safe suspicious actions and check they were detected."),
    }

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self._lazy[name][2]) for name in sorted(self._lazy)]
        rows += [(n, c.get_short_help_str()) for n, c in sorted(self.commands.items())]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            import importlib

            module, attr, _ = self._lazy[cmd_name]
            cmd = getattr(importlib.import_module(module), attr)
            assert isinstance(cmd, click.Command)
            return cmd
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lanner")
def cli() -> None:
    """Lanner: runtime security with Falco-compatible rules."""


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(2)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(0)


if __name__ == "__main__":
    main()
