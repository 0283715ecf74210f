#!/usr/bin/env python3
"""Checks every relative link in README.md and docs/**/*.md: the file exists and, for
`file.md#anchor`, the anchor is a heading of that file (GitHub's slug rules, simplified).
Run from the repository root: python3 docs/check_links.py"""
import pathlib, re, sys

def slugs(path):
    out, fence = set(), False
    for line in path.read_text().splitlines():
        if line.startswith('```'):
            fence = not fence
        m = None if fence else re.match(r'^#+\s+(.*)', line)
        if m:
            s = m.group(1).strip().lower()
            s = re.sub(r'[^\w\- ]', '', s).replace(' ', '-')
            out.add(s)
    return out

bad = 0
files = [pathlib.Path('README.md')] + sorted(pathlib.Path('docs').rglob('*.md'))
for f in files:
    text = re.sub(r'```.*?```', '', f.read_text(), flags=re.S)
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
        if re.match(r'^[a-z]+:', target):
            continue
        path, _, anchor = target.partition('#')
        dest = (f.parent / path).resolve() if path else f.resolve()
        if not dest.exists():
            print(f'{f}: {target}: no such file'); bad += 1
        elif anchor and dest.suffix == '.md' and anchor not in slugs(dest):
            print(f'{f}: {target}: no such heading'); bad += 1
print(f'{len(files)} files checked, {bad} broken links')
sys.exit(1 if bad else 0)
