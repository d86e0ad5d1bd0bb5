#!/usr/bin/env python3
"""Checks the repository's Dockerfile without docker.

What a `docker build` from a fresh clone needs, checked statically:

- every COPY/ADD source from the build context is a file or folder tracked by
  git (a fresh clone has nothing else) and not excluded by .dockerignore;
- the builder copies every Cargo workspace member, every path dependency of
  theirs, and every file their sources pull in with include_str!/include_bytes!
  (cargo cannot load or build the workspace otherwise);
- scripts the RUN steps call are copied before they run;
- every COPY --from=<stage> names an earlier stage and a path that stage's
  commands produce (mkdir / cp destinations), and the files copied into that
  path come from what the stage builds: `.wasm` names are lib targets of the
  crates scripts/build-modules builds, binaries are bin targets of the
  package `cargo build -p` names;
- the final stage runs as a numeric non-root user, from a small base image,
  with runtime.modules_dir (GRIDWATCH_RUNTIME__MODULES_DIR) pointing where the
  modules are copied, the same directory the Helm chart configures.

Usage: check_dockerfile.py [REPO_ROOT]. Exit 0 when all holds; otherwise the
problems are listed, one per line, and the exit code is 1.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

SMALL_BASES = (
    "gcr.io/distroless/",
    "debian:",  # only the -slim variants, checked below
    "alpine:",
    "scratch",
    "cgr.dev/chainguard/",
)


@dataclass
class Instruction:
    line: int
    cmd: str
    args: str


@dataclass
class Stage:
    index: int
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Splits a Dockerfile into stages of instructions, joining continuations
    and substituting ARG defaults in FROM lines."""
    logical: list[tuple[int, str]] = []
    buf, start = "", 0
    for no, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped, as docker does
        if not buf:
            start = no
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        logical.append((start, buf))
        buf = ""
    if buf:
        logical.append((start, buf))

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for no, line in logical:
        cmd, _, rest = line.partition(" ")
        cmd = cmd.upper()
        rest = rest.strip()
        if cmd == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip().strip('"')
            continue
        if cmd == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(len(stages), base, name))
            continue
        if not stages:
            raise SystemExit(f"Dockerfile:{no}: {cmd} before the first FROM")
        stages[-1].instructions.append(Instruction(no, cmd, rest))
    return args, stages


def copy_parts(args: str) -> tuple[dict[str, str], list[str], str]:
    """COPY/ADD flags, sources and destination (shell form or JSON form)."""
    if args.lstrip().startswith("["):
        import json

        parts = json.loads(args)
        flags: dict[str, str] = {}
    else:
        words = shlex.split(args)
        flags = {}
        while words and words[0].startswith("--"):
            key, _, value = words.pop(0)[2:].partition("=")
            flags[key] = value
        parts = words
    return flags, parts[:-1], parts[-1]


class DockerIgnore:
    """The .dockerignore rules with Docker's semantics: patterns are matched
    against the cleaned path (and its parent folders), `**` matches any number
    of folders, the last matching rule wins, `!` re-includes."""

    def __init__(self, text: str):
        self.rules: list[tuple[bool, str]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line[1:] if negate else line).lstrip("/")
            self.rules.append((negate, pattern))

    @staticmethod
    def _match(pattern: str, path: str) -> bool:
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            else:
                c = pattern[i]
                regex += "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
                i += 1
        return re.fullmatch(regex, path) is not None

    def excluded(self, path: str) -> bool:
        path = os.path.normpath(path).lstrip("/")
        candidates = [path]
        parts = path.split("/")
        candidates += ["/".join(parts[:k]) for k in range(1, len(parts))]
        result = False
        for negate, pattern in self.rules:
            if any(self._match(pattern, c) for c in candidates):
                result = not negate
        return result


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2])
    problems: list[str] = []
    dockerfile = root / "Dockerfile"
    _, stages = parse(dockerfile.read_text())
    ignore = DockerIgnore((root / ".dockerignore").read_text() if (root / ".dockerignore").exists() else "")
    tracked = set(
        subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True, text=True).stdout.split("\0")
    )
    tracked.discard("")
    # Files other sessions have staged but not yet committed count as tracked;
    # deleted-but-tracked ones do not.
    tracked = {f for f in tracked if (root / f).exists()}

    def context_files(src: str) -> list[str]:
        """Tracked, non-ignored files a context source names (glob or path)."""
        src = os.path.normpath(src)
        src = "" if src == "." else src.removeprefix("/")
        out = []
        for f in tracked:
            if not src or f == src or f.startswith(src + "/") or fnmatch.fnmatchcase(f, src):
                if not ignore.excluded(f):
                    out.append(f)
        return out

    copied_dirs: dict[int, list[str]] = {}  # stage -> context paths copied into it
    produced: dict[int, list[str]] = {}  # stage -> absolute paths its commands name
    stage_by_name = {s.name: s for s in stages if s.name}
    copies_checked = 0

    for stage in stages:
        copied: list[str] = []
        paths: list[str] = []
        workdir = "/"
        for ins in stage.instructions:
            if ins.cmd == "WORKDIR":
                workdir = str(PurePosixPath(workdir) / ins.args)
                paths.append(workdir)
            elif ins.cmd in ("COPY", "ADD"):
                flags, sources, dest = copy_parts(ins.args)
                dest_abs = str(PurePosixPath(workdir) / dest)
                paths.append(dest_abs.rstrip("/"))
                if "from" in flags:
                    ref = flags["from"]
                    src_stage = stage_by_name.get(ref) or (stages[int(ref)] if ref.isdigit() and int(ref) < len(stages) else None)
                    if src_stage is None:
                        print(f"note: Dockerfile:{ins.line}: COPY --from={ref} is an external image; not checkable here")
                        continue
                    if src_stage.index >= stage.index:
                        problems.append(f"Dockerfile:{ins.line}: COPY --from={ref} names a stage that is not earlier")
                        continue
                    for src in sources:
                        s = src.rstrip("/")
                        made = produced.get(src_stage.index, [])
                        if not any(p == s or p.startswith(s + "/") for p in made):
                            problems.append(
                                f"Dockerfile:{ins.line}: COPY --from={ref} {src}: no command of stage {ref} creates or writes that path"
                            )
                        copies_checked += 1
                else:
                    for src in sources:
                        if src.startswith(("http://", "https://")):
                            problems.append(f"Dockerfile:{ins.line}: {ins.cmd} from a URL cannot be checked offline: {src}")
                            continue
                        files = context_files(src)
                        if not files:
                            on_disk = (root / src).exists()
                            why = "excluded by .dockerignore" if on_disk and context_files_raw(root, src) else (
                                "not tracked by git (a fresh clone lacks it)" if on_disk else "does not exist"
                            )
                            problems.append(f"Dockerfile:{ins.line}: {ins.cmd} {src}: {why}")
                        copied.append(os.path.normpath(src))
                        copies_checked += 1
            elif ins.cmd == "RUN":
                text = re.sub(r"--mount=\S+", " ", ins.args)
                for word in shlex.split(text.replace("&&", " ").replace(";", " ")):
                    if word.startswith("/"):
                        paths.append(word.rstrip("/"))
                    elif "/" in word and not word.startswith("-"):
                        paths.append(str(PurePosixPath(workdir) / word).rstrip("/"))
                # Scripts run from the context must have been copied first.
                for word in shlex.split(text.replace("&&", " ")):
                    if re.fullmatch(r"(\./)?scripts/[\w.-]+", word):
                        rel = os.path.normpath(word)
                        if not any(rel == c or rel.startswith(c + "/") for c in copied):
                            problems.append(f"Dockerfile:{ins.line}: RUN calls {word} before it is copied")
        copied_dirs[stage.index] = copied
        produced[stage.index] = paths

    builder = next((s for s in stages if any(i.cmd == "RUN" and "cargo build" in i.args for i in s.instructions)), None)
    if builder is None:
        problems.append("no stage runs `cargo build`")
    else:
        copied = copied_dirs[builder.index]

        def is_copied(rel: str) -> bool:
            rel = os.path.normpath(rel)
            return any(rel == c or rel.startswith(c + "/") for c in copied) and not ignore.excluded(rel)

        workspace = tomllib.loads((root / "Cargo.toml").read_text())
        for f in ("Cargo.toml", "Cargo.lock"):
            if not is_copied(f):
                problems.append(f"the builder does not copy {f}")
        members = workspace.get("workspace", {}).get("members", [])
        crate_dirs = []
        for m in members:
            for d in sorted(root.glob(m)) if any(ch in m for ch in "*?[") else [root / m]:
                rel = str(d.relative_to(root))
                crate_dirs.append(rel)
                if not is_copied(rel + "/Cargo.toml"):
                    problems.append(f"workspace member {rel} is not copied into the builder (cargo cannot load the workspace)")
        deps = dict(workspace.get("workspace", {}).get("dependencies", {}))
        for rel in crate_dirs:
            manifest = root / rel / "Cargo.toml"
            if not manifest.exists():
                problems.append(f"workspace member {rel} has no Cargo.toml")
                continue
            crate = tomllib.loads(manifest.read_text())
            for table in ("dependencies", "dev-dependencies", "build-dependencies"):
                deps.update({f"{rel}:{k}": v for k, v in crate.get(table, {}).items()})
            # include_str!/include_bytes! of files outside what is copied.
            for rs in (root / rel).rglob("*.rs"):
                if "target" in rs.parts:
                    continue
                for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)', rs.read_text(errors="replace")):
                    target = (rs.parent / m.group(1)).resolve()
                    try:
                        inc = str(target.relative_to(root.resolve()))
                    except ValueError:
                        problems.append(f"{rs.relative_to(root)} includes {m.group(1)}, outside the repository")
                        continue
                    if not target.exists():
                        problems.append(f"{rs.relative_to(root)} includes {inc}, which does not exist")
                    elif not is_copied(inc):
                        problems.append(f"{rs.relative_to(root)} includes {inc}, which the builder does not copy")
        for key, spec in deps.items():
            if isinstance(spec, dict) and "path" in spec:
                base = root / key.split(":")[0] if ":" in key else root
                dep = os.path.normpath(os.path.relpath((base / spec["path"]).resolve(), root.resolve()))
                if not is_copied(dep + "/Cargo.toml"):
                    problems.append(f"path dependency {dep} ({key}) is not copied into the builder")

        # What the builder's cp commands put under /out must be built by it.
        run_text = " ".join(i.args for i in builder.instructions if i.cmd == "RUN")
        build_modules = (root / "scripts/build-modules").read_text() if (root / "scripts/build-modules").exists() else ""
        module_pkgs = re.findall(r"-p\s+([\w-]+)", build_modules) if "scripts/build-modules" in run_text else []
        lib_names = set()
        pkg_dirs = {}
        for rel in crate_dirs:
            manifest = root / rel / "Cargo.toml"
            if manifest.exists():
                crate = tomllib.loads(manifest.read_text())
                pkg_dirs[crate.get("package", {}).get("name")] = (rel, crate)
        for pkg in module_pkgs:
            if pkg not in pkg_dirs:
                problems.append(f"scripts/build-modules builds {pkg}, which is not a workspace package")
                continue
            rel, crate = pkg_dirs[pkg]
            lib = crate.get("lib", {}).get("name", pkg.replace("-", "_"))
            if "cdylib" not in crate.get("lib", {}).get("crate-type", []):
                problems.append(f"{pkg} is built to WASM but its [lib] crate-type lacks cdylib")
            lib_names.add(lib)
        for wasm in re.findall(r"target/wasm32-wasip1/release-lto/([\w-]+)\.wasm", run_text):
            if wasm not in lib_names:
                problems.append(f"the builder copies {wasm}.wasm, which scripts/build-modules does not build (it builds {sorted(lib_names)})")
        for pkg, binary in re.findall(r"cargo build[^&]*?-p\s+([\w-]+)[^&]*?--bin\s+([\w-]+)", run_text):
            if pkg not in pkg_dirs:
                problems.append(f"cargo build -p {pkg}: no such workspace package")
                continue
            rel, crate = pkg_dirs[pkg]
            bins = [b.get("name") for b in crate.get("bin", [])] or ([pkg] if (root / rel / "src/main.rs").exists() else [])
            if binary not in bins:
                problems.append(f"cargo build -p {pkg} --bin {binary}: {pkg} has no such binary ({bins})")
            if f"target/release/{binary}" not in run_text:
                problems.append(f"the builder does not copy target/release/{binary} out of the cache mount")

    final = stages[-1]
    user = [i.args.strip() for i in final.instructions if i.cmd == "USER"]
    if not user:
        problems.append("the final stage sets no USER: it would run as root")
    else:
        uid = user[-1].split(":")[0]
        if uid in ("0", "root"):
            problems.append(f"the final stage runs as {user[-1]}")
        elif not uid.isdigit():
            problems.append(f"USER {user[-1]}: use a numeric uid so Kubernetes runAsNonRoot can verify it")
    base = final.base
    if not base.startswith(SMALL_BASES) or (base.startswith("debian:") and "slim" not in base):
        problems.append(f"the final stage's base {base} is not a small runtime image")
    if builder is not None and final.index == builder.index:
        problems.append("the runtime image is the builder stage")
    envs = " ".join(i.args for i in final.instructions if i.cmd == "ENV")
    m = re.search(r"GRIDWATCH_RUNTIME__MODULES_DIR=(\S+)", envs)
    module_dest = [
        copy_parts(i.args)[2].rstrip("/")
        for i in final.instructions
        if i.cmd == "COPY" and any(".wasm" in s or s.rstrip("/").endswith("/modules") for s in copy_parts(i.args)[1])
    ]
    if not m:
        problems.append("the final stage does not set GRIDWATCH_RUNTIME__MODULES_DIR (runtime.modules_dir)")
    elif m.group(1).rstrip("/") not in module_dest:
        problems.append(f"GRIDWATCH_RUNTIME__MODULES_DIR={m.group(1)} is not where the modules are copied ({module_dest})")
    helpers = root / "k8s/gridwatch/templates/_helpers.tpl"
    if m and helpers.exists():
        hm = re.search(r'define "gridwatch.modulesDir" -}}([^{]+){{', helpers.read_text())
        if not hm or hm.group(1).strip() != m.group(1).rstrip("/"):
            problems.append(
                f"the Helm chart's modules dir ({hm.group(1).strip() if hm else '?'}) differs from the image's ({m.group(1)})"
            )
    if not any(i.cmd == "ENTRYPOINT" for i in final.instructions):
        problems.append("the final stage has no ENTRYPOINT")

    for p in problems:
        print(f"problem: {p}")
    print(
        f"Dockerfile: {len(stages)} stages ({', '.join(s.name or str(s.index) for s in stages)}), "
        f"{copies_checked} COPY sources checked, final base {final.base}, user {user[-1] if user else '-'}: "
        f"{'OK' if not problems else f'{len(problems)} problem(s)'}"
    )
    return 1 if problems else 0


def context_files_raw(root: Path, src: str) -> bool:
    """Whether a source has files on disk at all (to tell ignored from missing)."""
    p = root / src
    return p.is_file() or (p.is_dir() and any(x.is_file() for x in p.rglob("*")))


if __name__ == "__main__":
    sys.exit(main())
