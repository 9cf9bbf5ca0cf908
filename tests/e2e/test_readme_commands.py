"""The `medsettle ...` commands of the README and of every page in docs/
checked against the real command tree, so the docs cannot drift from the
CLI: every command a page names exists, every option it gives exists for
that command, takes a value when given one and accepts the value shown
(choices, integer ranges); an example written out in full (no `[...]`,
`(a | b)`) parses with every required option; the CLI table (docs/cli.md)
has a row per command; every option of every command is named somewhere in
the docs. (tests/e2e/test_readme_tour.py runs the README's tour itself.)

Where: fenced code blocks (with `\\` continuations and `$(...)`) and inline
code spans; `./scripts/run.sh ARGS` is `medsettle serve ... --demo ARGS`."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from medsettle.cli import main

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "node" / "README.md"]
DOCS = {str(page.relative_to(ROOT)): page.read_text("utf-8") for page in PAGES}
ALL_TEXT = "\n".join(DOCS.values())
CLI_PAGE = "docs/cli.md"
PLACEHOLDER_COMMANDS = {"COMMAND"}  # `medsettle COMMAND --help`
GRAMMAR = re.compile(r"[\[\]()|]|\.\.\.")
# `medsettle ARGS` as a command: at a line's start, after a space, `(` or a path's `/`,
# but not Python's `from medsettle import ...` in a snippet.
INVOCATION = re.compile(r"(?:^|(?<=[\s(/]))(?<!from )(?<!import )medsettle((?:[ \t]+[^\s)#`]+)+)")


@dataclass(frozen=True)
class Mention:
    text: str  # what follows `medsettle`
    where: str  # the page and line it starts on, for the failure message

    @property
    def is_grammar(self) -> bool:
        return bool(GRAMMAR.search(self.text))


def page_mentions(name: str, text: str) -> list[Mention]:
    found: list[Mention] = []
    prose_lines: list[str] = []
    in_fence, pending, pending_at = False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_fence = not in_fence
            prose_lines.append("")
            continue
        if not in_fence:
            prose_lines.append(line)
            continue
        prose_lines.append("")
        pending, pending_at = pending + line, pending_at or number
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        found += [Mention(hit.group(1).strip(), f"{name}:{pending_at}") for hit in INVOCATION.finditer(pending)]
        if pending.startswith("./scripts/run.sh"):
            found.append(Mention("serve --demo" + pending[len("./scripts/run.sh"):].split("#")[0].rstrip(), f"{name}:{pending_at}"))
        pending, pending_at = "", 0
    prose = "\n".join(prose_lines)
    for span in re.finditer(r"`([^`]+)`", prose):
        where = f"{name}:{prose.count(chr(10), 0, span.start()) + 1}"
        code = " ".join(span.group(1).replace("\\|", "|").split())
        if code.startswith("./scripts/run.sh"):
            found.append(Mention("serve --demo" + code[len("./scripts/run.sh"):], where))
            continue
        hit = re.match(r"(?:\S*/)?medsettle((?: +\S+)+)$", code)
        if hit:
            found.append(Mention(hit.group(1).strip(), where))
    return found


MENTIONS = [mention for name, text in DOCS.items() for mention in page_mentions(name, text)]


def resolve(tokens: list[str]) -> tuple[click.Command, list[str], list[str]] | None:
    """The command the leading words name, its path, and the rest; None for a placeholder."""
    command: click.Command = main
    path: list[str] = []
    while isinstance(command, click.Group) and tokens and not tokens[0].startswith("-"):
        if tokens[0] in PLACEHOLDER_COMMANDS:
            return None
        sub = command.commands.get(tokens[0])
        assert sub is not None, f"no command `medsettle {' '.join(path + tokens[:1])}`"
        command, path, tokens = sub, path + [tokens[0]], tokens[1:]
    return command, path, tokens


def options_of(command: click.Command) -> dict[str, click.Parameter]:
    ctx = click.Context(command, info_name=command.name)
    return {name: param for param in command.get_params(ctx) if isinstance(param, click.Option)
            for name in param.opts + param.secondary_opts}


def is_placeholder(value: str) -> bool:
    """`PATH`, `HOST:PORT`, `YYYY-MM`, `N`, `FILE.csv`, `$TOKEN`: a value the reader fills in."""
    return value.startswith("$") or bool(re.fullmatch(r"[A-Z][A-Z0-9_:.-]*(\.[a-z]+)?", value))


def check_values(command: click.Command, tokens: list[str], where: str) -> None:
    ctx = click.Context(command, info_name=command.name)
    options = options_of(command)
    for i, token in enumerate(tokens):
        if not token.startswith("--"):
            continue
        name, _, inline = token.partition("=")
        assert name in options, f"{where}: `medsettle {command.name}` has no option {name}"
        param = options[name]
        if param.is_flag or param.count:
            assert not inline, f"{where}: {name} is a flag"
            continue
        value = inline or (tokens[i + 1] if i + 1 < len(tokens) else "")
        assert value and not value.startswith("--"), f"{where}: {name} needs a value"
        checked_types = (click.Choice, click.types.IntParamType, click.types.FloatParamType)
        if not is_placeholder(value) and isinstance(param.type, checked_types):
            param.type.convert(value, param, ctx)  # raises BadParameter with the option's name


@pytest.mark.parametrize("mention", MENTIONS, ids=[f"{m.where} {m.text[:40]}" for m in MENTIONS])
def test_readme_command_exists_with_these_options(mention: Mention):
    tokens = GRAMMAR.sub(" ", mention.text).split() if mention.is_grammar else shlex.split(mention.text)
    resolved = resolve(tokens)
    if resolved is None:
        return
    command, path, rest = resolved
    check_values(command, rest, mention.where)
    if not rest:
        return  # the command named in prose, not an invocation
    given = {options_of(command)[t.partition("=")[0]].name for t in rest if t.startswith("--")}
    required = {p.name for p in command.params if isinstance(p, click.Option) and p.required}
    assert required <= given, f"{mention.where}: `medsettle {' '.join(path)}` also needs {sorted(required - given)}"
    if not mention.is_grammar:
        # written out in full: the command's own parser takes it (arguments, values, nothing left over)
        parser = command.make_parser(click.Context(command, info_name=command.name))
        opts, extra, _ = parser.parse_args(rest)
        assert not extra, f"{mention.where}: unexpected {extra}"
        missing = [p.name for p in command.params if isinstance(p, click.Argument) and p.required and p.name not in opts]
        assert not missing, f"{mention.where}: `medsettle {' '.join(path)}` needs argument(s) {missing}"


def leaf_commands(group: click.Group = main, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    leaves = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            leaves += leaf_commands(command, prefix + (name,))
        else:
            leaves.append((prefix + (name,), command))
    return leaves


def cli_table_rows() -> list[str]:
    return [line for line in DOCS[CLI_PAGE].splitlines() if line.startswith("| `medsettle ")]


@pytest.mark.parametrize("path,command", leaf_commands(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_has_a_cli_table_row_and_its_options_are_in_the_docs(path, command):
    spelled = "medsettle " + " ".join(path)
    assert any(re.search(rf"`{re.escape(spelled)}[\s`]", row) for row in cli_table_rows()), \
        f"{CLI_PAGE}'s table has no row for `{spelled}`"
    named_for_it = set()
    for mention in MENTIONS:
        tokens = GRAMMAR.sub(" ", mention.text).split()
        if tokens[:len(path)] == list(path):
            named_for_it |= {t.partition("=")[0] for t in tokens[len(path):] if t.startswith("--")}
    standalone = set(re.findall(r"`(--[a-z][a-z0-9-]*)", ALL_TEXT))
    undocumented = [name for param in command.params if isinstance(param, click.Option)
                    for name in param.opts if name.startswith("--") and name not in named_for_it | standalone]
    assert not undocumented, f"`{spelled}`: {undocumented} not in the docs"


def test_the_extraction_finds_the_examples():
    texts = [m.text for m in MENTIONS]
    assert "credentials issue --db var/medsettle.db --code H44010100001 --label grpcurl" in texts  # docs/api.md
    assert "credentials issue --db var/medsettle.db --code H13010100001 --label tour" in texts  # README's tour
    assert "serve --demo --exit-after-demo" in texts
    assert any(m.text == "serve --demo --clock 2026-10-15T10:30" and m.where.startswith("README.md:") for m in MENTIONS)
    assert any(t.startswith("clear --province 44 --period 2026-10 --db var/medsettle.db") and "--dry-run" in t for t in texts)
    assert {m.where.partition(":")[0] for m in MENTIONS} >= {"README.md", "docs/api.md", "docs/cli.md", "docs/operations.md"}
    run_sh = (ROOT / "scripts" / "run.sh").read_text()
    assert re.search(r"medsettle serve .*--demo \"\$@\"", run_sh)  # extra arguments go to serve


def test_a_drifted_example_fails():
    with pytest.raises(AssertionError, match="no option --stamtent-dir"):
        check_values(main.commands["clear"], ["--stamtent-dir", "d"], "x")
    with pytest.raises(click.BadParameter):
        check_values(main.commands["credentials"].commands["issue"], ["--role", "admin"], "x")  # type: ignore[attr-defined]
    with pytest.raises(AssertionError, match="no command"):
        resolve(["settel", "bill.json"])
    assert not INVOCATION.search('python -c "from medsettle import compiled"')
    assert INVOCATION.search(".venv/bin/medsettle verify --db x").group(1).strip() == "verify --db x"
