"""The bwrap command line a tool runs under (ades.execute.sandbox.command), read as the sandbox's contract: what is
bound and how, who the tool runs as, and when it has a network."""

from __future__ import annotations

from pathlib import Path

from ades.execute.sandbox import Confinement, command

SYSTEM = [Path("/usr"), Path("/etc")]
WORK = Path("/srv/ades/data/jobs/j1/work/abc")
TMP = Path("/srv/ades/data/jobs/j1/tmp/def")
INPUT = Path("/srv/ades/data/jobs/j1/stage/in.txt")


def build(confinement: Confinement, network: bool = False) -> list[str]:
    return command(confinement, cwd=WORK, writable=[WORK, TMP], inputs=[INPUT], network=network)


def pairs(cmd: list[str], option: str) -> list[tuple[str, str]]:
    """Every `option SRC DEST` in the command (bwrap's bind options take two paths)."""
    return [(cmd[i + 1], cmd[i + 2]) for i, word in enumerate(cmd) if word == option]


def bwrap_part(cmd: list[str]) -> list[str]:
    return cmd[: cmd.index("--")]


def test_the_system_is_read_only_inputs_read_only_and_only_the_tool_folders_writable() -> None:
    cmd = build(Confinement(read_only=SYSTEM, network=True))
    assert pairs(cmd, "--ro-bind") == [("/usr", "/usr"), ("/etc", "/etc")]
    assert pairs(cmd, "--ro-bind-try") == [(str(INPUT), str(INPUT))]
    assert pairs(cmd, "--bind") == [(str(WORK), str(WORK)), (str(TMP), str(TMP))]
    assert cmd[cmd.index("--chdir") + 1] == str(WORK)


def test_every_folder_above_a_bound_path_is_made_traversable_before_the_binds() -> None:
    cmd = bwrap_part(build(Confinement(read_only=SYSTEM, network=True)))
    made = [cmd[i + 1] for i, word in enumerate(cmd) if word == "--dir"]
    assert made == ["/srv", "/srv/ades", "/srv/ades/data", "/srv/ades/data/jobs", "/srv/ades/data/jobs/j1",
                    "/srv/ades/data/jobs/j1/stage", "/srv/ades/data/jobs/j1/work", "/srv/ades/data/jobs/j1/tmp"]
    for i, word in enumerate(cmd):
        if word == "--dir":
            assert cmd[i - 2 : i] == ["--perms", "0755"]
    first_bind = min(cmd.index(option) for option in ("--ro-bind", "--ro-bind-try", "--bind"))
    assert max(i for i, word in enumerate(cmd) if word == "--dir") < first_bind


def test_as_a_normal_user_everything_is_unshared_and_the_network_only_when_declared_and_allowed() -> None:
    confinement = Confinement(read_only=SYSTEM, network=True)
    assert "--unshare-all" in build(confinement)
    assert "--share-net" not in build(confinement)
    assert "--share-net" in build(confinement, network=True)
    assert "--share-net" not in build(Confinement(read_only=SYSTEM, network=False), network=True)
    assert "setpriv" not in build(confinement)


def test_as_root_the_tool_drops_to_the_job_user_for_good_and_has_no_network_unless_declared() -> None:
    confinement = Confinement(read_only=SYSTEM, network=True, uid=999, gid=998)
    cmd = build(confinement)
    assert "--unshare-net" in bwrap_part(cmd)
    assert "--unshare-user" not in cmd and "--unshare-all" not in cmd
    dropped = cmd[cmd.index("--") + 1 :]
    assert dropped == ["setpriv", "--reuid=999", "--regid=998", "--clear-groups", "--no-new-privs", "--"]
    assert "--unshare-net" not in build(confinement, network=True)
    assert "--unshare-net" in build(Confinement(read_only=SYSTEM, network=False, uid=999, gid=998), network=True)


def test_links_out_of_what_the_tool_may_read_are_found(tmp_path: Path) -> None:
    from ades.execute.sandbox import escaping_links

    outdir, inputs, secret = tmp_path / "out", tmp_path / "in", tmp_path / "secret"
    for folder in (outdir / "sub", inputs):
        folder.mkdir(parents=True)
    secret.write_text("s")
    (inputs / "a.txt").write_text("a")
    (outdir / "mine.txt").write_text("m")
    (outdir / "to-secret").symlink_to(secret)
    (outdir / "sub" / "to-secret-dir").symlink_to(tmp_path)
    (outdir / "to-input").symlink_to(inputs / "a.txt")
    (outdir / "to-mine").symlink_to("mine.txt")
    found = escaping_links(outdir, [outdir, inputs])
    assert sorted(p.name for p in found) == ["to-secret", "to-secret-dir"]
