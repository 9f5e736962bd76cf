#!/usr/bin/env python3
"""Checks that chom's modules import only downwards: no import circle, no import running back up.

The order is the one the code declares: src/lib.rs declares the planes (folders) bottom-up, each plane's mod.rs
declares its files bottom-up. A file may name (crate::plane::file) only files declared before it: files of a
lower plane, or earlier files of its own plane. Comments and the test modules at the end of a file
(from its first `#[cfg(test)]` or `#[cfg(any(test, ...))]`) are not looked at: tests may call anything.

usage: python3 scripts/layers.py [--help] [SRC_DIR]   (SRC_DIR defaults to src/ of this repository)
Prints one line per violation and exits 1 when there is any; prints the order and exits 0 otherwise.
"""
import os
import re
import sys

MOD = re.compile(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", re.M)
PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)(?:::([a-z_][a-z0-9_]*))?")
GROUP = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)::\{([^}]*)\}", re.S)
TESTS = re.compile(r"^#\[cfg\((?:test|any\(test)", re.M)
# files of the crate root that are not a plane: the pg_test set-up and the crate root itself
ROOT_ONLY = {"test_support"}


def declared(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    code = TESTS.split(text, maxsplit=1)[0]
    return [m for m in MOD.findall(strip_comments(code)) if m not in ROOT_ONLY and m != "pg_test"]


def strip_comments(text):
    # line comments only (chom has no block comments); string literals holding // are rare enough to accept
    return "\n".join(line.split("//", 1)[0] for line in text.split("\n"))


def code_of(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return strip_comments(TESTS.split(text, maxsplit=1)[0])


def main():
    args = sys.argv[1:]
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if args and args[0].startswith("-"):
        print(f"layers: unknown option {args[0]} (see --help)", file=sys.stderr)
        return 2
    src = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    planes = declared(os.path.join(src, "lib.rs"))
    rank = {}
    files = []
    for p, plane in enumerate(planes):
        folder = os.path.join(src, plane)
        if not os.path.isdir(folder):
            print(f"layers: plane {plane} is not a folder of {src}", file=sys.stderr)
            return 1
        for f, name in enumerate(declared(os.path.join(folder, "mod.rs"))):
            rank[(plane, name)] = (p, f)
            files.append((plane, name, os.path.join(folder, name + ".rs")))
        undeclared = sorted(
            n[:-3] for n in os.listdir(folder) if n.endswith(".rs") and n != "mod.rs" and (plane, n[:-3]) not in rank
        )
        for name in undeclared:
            print(f"layers: {plane}/{name}.rs is not declared in {plane}/mod.rs", file=sys.stderr)
            return 1
    loose = sorted(n[:-3] for n in os.listdir(src) if n.endswith(".rs") and n[:-3] not in {"lib"} | ROOT_ONLY)
    violations = [f"src/{name}.rs: a module outside the planes (put it in the folder of its plane)" for name in loose]
    for plane, name, path in files:
        code = code_of(path)
        named = set()
        for m in PATH.finditer(code):
            named.add((m.group(1), m.group(2)))
        for m in GROUP.finditer(code):
            for item in m.group(2).split(","):
                first = item.strip().split("::")[0].split(" ")[0]
                if first and first != "self":
                    named.add((m.group(1), first))
        for used_plane, used in sorted(named, key=lambda x: (x[0], x[1] or "")):
            if used_plane in ROOT_ONLY:
                continue
            if used_plane not in planes:
                violations.append(f"src/{plane}/{name}.rs names crate::{used_plane}, which is not a plane")
                continue
            if used is None or (used_plane, used) not in rank:
                # crate::plane alone, or a name the plane's mod.rs re-exports: judged by the plane
                if planes.index(used_plane) > rank[(plane, name)][0]:
                    violations.append(f"src/{plane}/{name}.rs imports upwards: crate::{used_plane}")
                continue
            if (used_plane, used) != (plane, name) and rank[(used_plane, used)] >= rank[(plane, name)]:
                violations.append(
                    f"src/{plane}/{name}.rs imports upwards: crate::{used_plane}::{used} "
                    f"(declared after it: move the shared part down, or this file up)"
                )
    for v in violations:
        print(f"layers: {v}")
    if violations:
        return 1
    print("layers: ok, bottom-up: " + " < ".join(f"{p}/({'|'.join(n for (q, n) in rank if q == p)})" for p in planes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
