"""The text of a systemd unit or of the nssm commands that run a streamkit server as a service.

Pure functions: the caller finds the program, the user and the folders; these only quote and
lay out. Quoting follows systemd.service(5) "Command lines" (C escapes in double quotes,
``%%`` for a specifier's ``%``, ``$$`` for ``$``) and, on Windows, the MSVCRT rules that
``nssm`` and the program split their command lines by, with ``^`` for cmd.exe's ``& | < > ^``
outside quotes (cmd.exe cannot protect ``%`` inside quotes: an argument like ``%PATH%`` is
expanded by the prompt).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

SYSTEMD_PLAIN = re.compile(r"[A-Za-z0-9_+=:,./@-]+")
SYSTEMD_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
UNIT_NAME = re.compile(r"[A-Za-z0-9_.@-]+")
SECRET_WORDS = ("token", "secret", "password")
SAFE_SECRET_PREFIXES = ("env:", "file:")
CMD_SPECIALS = "&|<>^"


@dataclass(frozen=True)
class Service:
    name: str
    description: str
    command: Sequence[str]  # the program and every argument
    working_dir: str
    user: str
    env_file: str
    restart_sec: int = 5
    reloads_on_hup: bool = False


def systemd_quote(arg: str, program: bool = False) -> str:
    """One ExecStart word that systemd turns back into exactly ``arg``. The program's path is
    not searched for ``$`` variables (its arguments are), so there ``$`` stays single; and
    systemd refuses a program path with quotes, backslashes or control characters."""
    if program and any(c in "\"'\\\x7f" or ord(c) < 0x20 for c in arg):
        raise ValueError(
            f"{arg!r}: systemd runs no program whose path has quotes, backslashes or control"
            " characters"
        )
    if SYSTEMD_PLAIN.fullmatch(arg):
        return arg
    escaped = "".join(
        SYSTEMD_ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x20 or c == "\x7f" else c)
        for c in arg
    ).replace("%", "%%")
    return '"' + (escaped if program else escaped.replace("$", "$$")) + '"'


def systemd_value(value: str) -> str:
    """A setting's value taken as it is (a path, a user): only specifiers need escaping."""
    if any(ord(c) < 0x20 or c == "\x7f" for c in value) or value.endswith("\\"):
        raise ValueError(f"{value!r}: not usable in a unit file")
    return value.replace("%", "%%")


def systemd_unit(service: Service) -> str:
    program, *args = service.command
    exec_start = " ".join([systemd_quote(program, program=True), *map(systemd_quote, args)])
    reload = "ExecReload=/bin/kill -HUP $MAINPID\n" if service.reloads_on_hup else ""
    return f"""\
# Written by `streamkit service install`. Secrets go in the EnvironmentFile, never here:
# unit files are world-readable.
[Unit]
Description={systemd_value(service.description)}
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
User={systemd_value(service.user)}
WorkingDirectory={systemd_value(service.working_dir)}
EnvironmentFile=-{systemd_value(service.env_file)}
ExecStart={exec_start}
{reload}Restart=on-failure
RestartSec={service.restart_sec}
SyslogIdentifier={service.name}
LimitNOFILE=65536
# Hardening that leaves the data folders writable (a connector keeps live datasets under
# ROOT/.streamkit): only /usr, /boot and /etc become read-only.
NoNewPrivileges=true
PrivateTmp=true
ProtectSystem=full
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectControlGroups=true
RestrictSUIDSGID=true
LockPersonality=true

[Install]
WantedBy=multi-user.target
"""


def windows_quote(arg: str) -> str:
    """One argument as the MSVCRT (and CommandLineToArgvW) splitting reads it back."""
    if arg and not any(c in arg for c in ' \t"' + CMD_SPECIALS):
        return arg
    out, backslashes = ['"'], 0
    for c in arg:
        if c == "\\":
            backslashes += 1
            continue
        # Backslashes double only before a quote; the quote itself gets one more.
        out.append("\\" * (backslashes * 2 + 1) + '"' if c == '"' else "\\" * backslashes + c)
        backslashes = 0
    out.append("\\" * (backslashes * 2) + '"')
    return "".join(out)


def cmd_escape(line: str) -> str:
    """``^`` before cmd.exe's specials that fall outside its (toggling) double quotes."""
    out, quoted = [], False
    for c in line:
        if c == '"':
            quoted = not quoted
        out.append("^" + c if c in CMD_SPECIALS and not quoted else c)
    return "".join(out)


def nssm_commands(service: Service, log_file: str) -> list[str]:
    """The cmd.exe lines that install and start the service with nssm. ``nssm install`` joins
    its arguments with spaces into the program's command line, so they go as one argument."""
    name = service.name
    program, *args = service.command
    parameters = " ".join(windows_quote(a) for a in args)

    def line(*words: str) -> str:
        return cmd_escape(" ".join(windows_quote(w) for w in words))

    return [
        line("nssm", "install", name, program, parameters),
        line("nssm", "set", name, "AppDirectory", service.working_dir),
        line("nssm", "set", name, "AppStdout", log_file),
        line("nssm", "set", name, "AppStderr", log_file),
        line("nssm", "set", name, "AppRotateFiles", "1"),
        line("nssm", "set", name, "AppRotateOnline", "1"),
        line("nssm", "set", name, "AppRotateBytes", "10485760"),
        line("nssm", "start", name),
    ]


def literal_secrets(args: Sequence[str]) -> list[str]:
    """The options among ``args`` (``--token X`` or ``--token=X``) that carry a secret in the
    clear rather than as ``env:NAME`` or ``file:PATH``."""
    found = []
    for i, arg in enumerate(args):
        option, eq, value = arg.partition("=")
        if not option.startswith("--") or not any(w in option for w in SECRET_WORDS):
            continue
        if not eq:
            value = args[i + 1] if i + 1 < len(args) else ""
        if value and not value.startswith(SAFE_SECRET_PREFIXES):
            found.append(option)
    return found


def env_names(args: Sequence[str]) -> list[str]:
    """The environment variables that ``env:NAME`` values (``--token env:NAME`` or
    ``--token=env:NAME``) name."""
    values = (a.partition("=")[2] if a.startswith("--") else a for a in args)
    return [v[4:] for v in values if v.startswith("env:") and v[4:]]
