"""``streamkit service install``: systemd units and nssm commands that run exactly the command
line given. The quoting is read back with splitters written here after systemd.service(5) and
the MSVCRT/cmd.exe rules, and ``systemd-analyze verify`` checks the units themselves."""

from __future__ import annotations

import configparser
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from streamkit.cli import app
from streamkit.service_units import Service, nssm_commands, systemd_unit

STREAMKIT = REPO / ".venv" / "bin" / "streamkit"
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
AWKWARD = [
    "/srv/my data",
    "100%",
    "%n",
    "$HOME",
    "${HOME}",
    "a$$b",
    "it's",
    'say "hi"',
    "back\\slash\\",
    "tab\there",
    "line\nbreak",
    ";",
    "",
    "ünïcode ✓",
    "--where=temperature > 24.5 AND sensor = 'a'",
]
C_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r", "s": " "}


def systemd_words(line: str) -> list[str]:
    """ExecStart's words as systemd extracts them: quotes, C escapes (before any specifier)."""
    words, i = [], 0
    while True:
        while i < len(line) and line[i] in " \t":
            i += 1
        if i == len(line):
            return words
        word: list[str] = []
        quote = None
        while i < len(line) and (quote or line[i] not in " \t"):
            c = line[i]
            if c == "\\":
                if line[i + 1] == "x":
                    word.append(chr(int(line[i + 2 : i + 4], 16)))
                    i += 4
                else:
                    word.append(C_ESCAPES[line[i + 1]])
                    i += 2
                continue
            if c == quote:
                quote = None
            elif quote is None and c in "\"'":
                quote = c
            else:
                word.append(c)
            i += 1
        assert quote is None, f"unbalanced quotes in {line!r}"
        words.append("".join(word))


def unspecify(word: str) -> str:
    """Unit specifiers: only ``%%`` may appear (anything else would be replaced)."""
    assert re.fullmatch(r"([^%]|%%)*", word), f"unescaped specifier in {word!r}"
    return word.replace("%%", "%")


def unenv(word: str) -> str:
    """Environment substitution at exec time: only ``$$`` may appear."""
    assert re.fullmatch(r"([^$]|\$\$)*", word), f"unescaped variable in {word!r}"
    return word.replace("$$", "$")


def exec_start_argv(unit: str) -> list[str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read_string(unit)
    program, *args = (unspecify(w) for w in systemd_words(parser["Service"]["ExecStart"]))
    return [program, *map(unenv, args)]


def cmd_line(line: str) -> str:
    """What cmd.exe hands the program: ``^`` outside its toggling quotes escapes, and nothing
    special may be left unescaped there."""
    out, quoted, i = [], False, 0
    while i < len(line):
        c = line[i]
        if c == '"':
            quoted = not quoted
        elif not quoted and c == "^":
            out.append(line[i + 1])
            i += 2
            continue
        assert quoted or c not in "&|<>", f"cmd.exe would act on {c!r} in {line!r}"
        out.append(c)
        i += 1
    return "".join(out)


def windows_argv(line: str) -> list[str]:
    """CommandLineToArgvW / MSVCRT splitting (2008 rules, ``""`` in quotes is a quote)."""
    args: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return args
        arg: list[str] = []
        quoted = False
        while i < n and (quoted or line[i] not in " \t"):
            if line[i] == "\\":
                j = i
                while j < n and line[j] == "\\":
                    j += 1
                if j < n and line[j] == '"':
                    arg.append("\\" * ((j - i) // 2))
                    if (j - i) % 2:
                        arg.append('"')
                        j += 1
                else:
                    arg.append("\\" * (j - i))
                i = j
            elif line[i] == '"':
                if quoted and i + 1 < n and line[i + 1] == '"':
                    arg.append('"')
                    i += 2
                else:
                    quoted = not quoted
                    i += 1
            else:
                arg.append(line[i])
                i += 1
        args.append("".join(arg))


def service(command: list[str], **fields: object) -> Service:
    values: dict[str, object] = {
        "name": "streamkit-gateway",
        "description": "streamkit gateway",
        "command": command,
        "working_dir": "/srv/streamkit",
        "user": "root",
        "env_file": "/etc/streamkit/streamkit-gateway.env",
        **fields,
    }
    return Service(**values)


def verify(unit_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit_path)], capture_output=True, text=True, timeout=60
    )


def install(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, ["service", "install", *args])
    finally:
        os.chdir(old)
    return result.exit_code, result.stdout, result.stderr


def test_exec_start_round_trips_awkward_arguments():
    command = [str(STREAMKIT), "gateway", "up", *AWKWARD]
    assert exec_start_argv(systemd_unit(service(command))) == command


@given(st.lists(st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"))))
def test_exec_start_round_trips_any_arguments(args):
    command = ["/opt/streamkit/bin/streamkit", "connector", "serve", *args]
    assert exec_start_argv(systemd_unit(service(command))) == command


def test_systemd_reads_the_program_path_as_quoted(tmp_path):
    # systemd-analyze verify checks that the program exists, so this holds systemd's own
    # unquoting to ours, for a path with spaces, % and $ (quotes and backslashes systemd
    # refuses in a program's path; so do we, below).
    folder = tmp_path / "odd  dir 100% $HOME ${X} ünï"
    folder.mkdir()
    program = folder / "streamkit"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    good = tmp_path / "good.service"
    good.write_text(systemd_unit(service([str(program), "gateway", "up", *AWKWARD])))
    result = verify(good)
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip(), result.stderr

    naive = tmp_path / "naive.service"
    naive.write_text(
        re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={program} gateway up", good.read_text())
    )
    assert verify(naive).returncode != 0  # so the check above can fail


@pytest.mark.parametrize("program", ['/opt/"sk"/streamkit', "/opt/it's/streamkit", "/a\\b/sk"])
def test_program_paths_systemd_refuses_are_refused(program):
    with pytest.raises(ValueError, match="systemd runs no program"):
        systemd_unit(service([program, "gateway", "up"]))


def test_install_writes_a_unit_that_verifies_and_runs_the_command_line(tmp_path):
    unit_path = tmp_path / "streamkit-connector.service"
    args = ["/srv/plant data", "--port", "50051", "--token", "env:PLANT_TOKEN", "--where", "x%$"]
    code, stdout, stderr = install(
        "connector", "--output", str(unit_path), "--user", "nobody", "--", *args, cwd=tmp_path
    )
    assert code == 0, stderr
    assert stdout == ""
    assert f"wrote {unit_path}" in stderr
    assert "PLANT_TOKEN=... in /etc/streamkit/streamkit-connector.env" in stderr
    assert "systemctl daemon-reload && systemctl enable --now streamkit-connector" in stderr

    unit = unit_path.read_text()
    argv = exec_start_argv(unit)
    assert argv[1:] == ["connector", "serve", *args]
    assert Path(argv[0]).is_absolute() and Path(argv[0]).is_file()
    lines = unit.splitlines()
    for expected in (
        f"WorkingDirectory={tmp_path}",
        "User=nobody",
        "EnvironmentFile=-/etc/streamkit/streamkit-connector.env",
        "Restart=on-failure",
        "RestartSec=5",
        "After=network-online.target",
        "Wants=network-online.target",
        "WantedBy=multi-user.target",
        "NoNewPrivileges=true",
        "PrivateTmp=true",
    ):
        assert expected in lines, expected
    assert not any(line.startswith("ExecReload=") for line in lines)  # connectors don't reload
    assert "ProtectSystem=strict" not in lines and "ReadOnlyPaths=/" not in lines

    result = verify(unit_path)
    assert result.returncode == 0, result.stderr


def test_gateway_unit_reloads_on_hup_and_takes_its_options(tmp_path):
    code, unit, stderr = install(
        "gateway",
        "--print",
        "--name",
        "edge-gw",
        "--working-dir",
        str(tmp_path),
        "--env-file",
        "/run/secrets/gw.env",
        "--restart-sec",
        "11",
        "--",
        "--config",
        "/etc/streamkit/my config.toml",
    )
    assert code == 0, stderr
    lines = unit.splitlines()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in lines
    assert "EnvironmentFile=-/run/secrets/gw.env" in lines
    assert f"WorkingDirectory={tmp_path}" in lines
    assert "RestartSec=11" in lines
    assert "SyslogIdentifier=edge-gw" in lines
    assert exec_start_argv(unit)[1:] == [
        "gateway",
        "up",
        "--config",
        "/etc/streamkit/my config.toml",
    ]


def test_print_writes_nothing(tmp_path):
    default = Path("/etc/systemd/system/streamkit-connector.service")
    before = default.stat() if default.exists() else None
    code, unit, stderr = install("connector", "--print", "--", "data", cwd=tmp_path)
    assert code == 0, stderr
    assert "[Service]" in unit and exec_start_argv(unit)[1:] == ["connector", "serve", "data"]
    assert "wrote" not in stderr and "systemctl" not in stderr
    assert (default.stat() if default.exists() else None) == before
    code, _, stderr = install("connector", "--print", "--output", str(tmp_path / "u.service"))
    assert code == 0, stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--token", "abc123"],
        ["--token=abc123"],
        ["data", "--port", "1", "--token", "s3cr3t"],
    ],
)
def test_literal_secret_is_refused(tmp_path, args):
    unit_path = tmp_path / "x.service"
    code, stdout, stderr = install("connector", "--output", str(unit_path), "--", *args)
    assert code != 0
    assert not unit_path.exists() and stdout == ""
    assert "--token" in stderr and "env:VAR" in stderr
    assert "/etc/streamkit/streamkit-connector.env" in stderr
    for arg in args:
        assert "abc123" not in stderr and "s3cr3t" not in stderr, arg


def test_env_and_file_secrets_are_accepted():
    for token in ("env:CONNECTOR_TOKEN", "file:/etc/streamkit/token"):
        code, unit, stderr = install("connector", "--print", "--", "--token", token)
        assert code == 0, stderr
        assert exec_start_argv(unit)[-2:] == ["--token", token]


def test_unwritable_target_is_one_clear_line(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    code, _, stderr = install("gateway", "--output", str(blocker / "x.service"))
    assert code == 1
    assert stderr.startswith(f"streamkit: cannot write {blocker / 'x.service'}: ")
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


def test_bad_name_is_refused():
    code, _, stderr = install("gateway", "--print", "--name", "../evil")
    assert code == 1 and "--name" in stderr


def test_windows_prints_nssm_commands_with_windows_quoting():
    args = [
        "D:\\plant data\\",
        "--port",
        "50051",
        "--where",
        'name = "a&b" | c',
        "--token",
        "env:T",
    ]
    code, stdout, stderr = install(
        "connector", "--platform", "windows", "--working-dir", "C:\\streamkit", "--", *args
    )
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert [windows_argv(cmd_line(line))[:3] for line in lines] == [
        ["nssm", "install", "streamkit-connector"],
        *[["nssm", "set", "streamkit-connector"]] * 6,
        ["nssm", "start", "streamkit-connector"],
    ]
    *_, program, parameters = windows_argv(cmd_line(lines[0]))
    assert Path(program).is_absolute()
    assert windows_argv(parameters) == ["connector", "serve", *args]
    settings = {w[3]: w[4:] for w in map(windows_argv, map(cmd_line, lines[1:-1]))}
    assert settings["AppDirectory"] == ["C:\\streamkit"]
    assert (
        settings["AppStdout"] == settings["AppStderr"] == ["C:\\streamkit\\streamkit-connector.log"]
    )
    assert "nssm set streamkit-connector AppEnvironmentExtra T=..." in stderr


def test_windows_quoting_matches_the_original_note():
    # The note: nssm install DataConnector "python" "C:\path\to\flight_server.py --port 50051"
    lines = nssm_commands(
        service(
            ["C:\\Program Files\\Python\\python.exe", "-m", "streamkit", "gateway", "up"],
            name="DataConnector",
            working_dir="C:\\srv",
        ),
        "C:\\srv\\DataConnector.log",
    )
    assert lines[0] == (
        'nssm install DataConnector "C:\\Program Files\\Python\\python.exe"'
        ' "-m streamkit gateway up"'
    )
    assert lines[-1] == "nssm start DataConnector"


@given(st.lists(st.text(st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="%!"))))
def test_nssm_parameters_round_trip_any_arguments(args):
    lines = nssm_commands(service(["C:\\sk\\streamkit.exe", *args]), "C:\\sk\\x.log")
    *_, program, parameters = windows_argv(cmd_line(lines[0]))
    assert program == "C:\\sk\\streamkit.exe"
    assert windows_argv(parameters) == args


def test_real_cli_in_a_subprocess(tmp_path):
    unit_path = tmp_path / "streamkit-gateway.service"
    proc = subprocess.run(
        [
            str(STREAMKIT),
            "service",
            "install",
            "gateway",
            "-o",
            str(unit_path),
            "--",
            "--config",
            str(tmp_path / "streamkit.toml"),
            "--http-port",
            "8080",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "SUDO_USER"},
    )
    assert proc.returncode == 0, proc.stderr
    unit = unit_path.read_text()
    # run by its script, the unit names that script
    assert exec_start_argv(unit) == [
        str(STREAMKIT),
        "gateway",
        "up",
        "--config",
        str(tmp_path / "streamkit.toml"),
        "--http-port",
        "8080",
    ]
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit.splitlines()
    result = verify(unit_path)
    assert result.returncode == 0, result.stderr

    refused = subprocess.run(
        [str(STREAMKIT), "service", "install", "connector", "--print", "--", "--token", "abc123"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and refused.stdout == ""
    assert "env:VAR" in refused.stderr and "abc123" not in refused.stderr


def test_python_m_streamkit_is_named_with_its_interpreter(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "streamkit", "service", "install", "connector", "--print"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={**os.environ, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    program = exec_start_argv(proc.stdout)[0]
    # the script installed next to this Python, else this Python with -m streamkit
    assert program in (str(STREAMKIT.absolute()), sys.executable)
