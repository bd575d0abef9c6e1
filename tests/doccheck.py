#!/usr/bin/env python3
"""doccheck.py - what the documentation points at exists (tests/docs.bats).

  doccheck.py links FILE.md...
      every relative link resolves to an existing file or directory, and
      every #anchor into a markdown file (or within one) names a heading
      of it, by GitHub's slug rules.
  doccheck.py targets [--allow T]... --makefile MAKEFILE FILE...
      every `make TARGET` named in code (inline `code`, fenced or indented
      blocks of the .md files; literal lines and blocks of the man pages)
      is a target the Makefile knows, as make itself lists them.
  doccheck.py slug HEADING...
      prints the slug of each heading (for the test of the slug rules).

Prints one line per problem, FILE:LINE: what is wrong, and exits 1 if
there was any; 0 and no output otherwise.  Paths are printed as given.
"""
import fnmatch
import os
import re
import subprocess
import sys
import unicodedata
import urllib.parse

FENCE = re.compile(r'^ {0,3}(`{3,}|~{3,})')


def md_lines(path):
    """(line number, text, in_code) for each line; fenced blocks are code."""
    out, fence = [], None
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip('\n')
            m = FENCE.match(line)
            if fence is None and m:
                fence = m.group(1)
                out.append((n, line, True))
            elif fence is not None:
                out.append((n, line, True))
                if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                        and line.strip() == m.group(1):
                    fence = None
            else:
                out.append((n, line, False))
    return out


def prose(path):
    """(line number, text) of the lines outside fences and HTML comments."""
    out, comment = [], False
    for n, line, code in md_lines(path):
        if code:
            continue
        text = ''
        while line:
            if comment:
                end = line.find('-->')
                if end < 0:
                    line = ''
                else:
                    line, comment = line[end + 3:], False
            else:
                start = line.find('<!--')
                if start < 0:
                    text, line = text + line, ''
                else:
                    text, line, comment = text + line[:start], line[start + 4:], True
        out.append((n, text))
    return out


CODE_SPAN = re.compile(r'(`+)(.+?)(?<!`)\1(?!`)')


def strip_code_spans(text):
    return CODE_SPAN.sub(lambda m: ' ' * len(m.group(0)), text)


def slug(heading):
    """GitHub's anchor for a heading: markup dropped, lowercase, every
    character but letters, digits, '-', '_' and spaces dropped, spaces to '-'."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)   # links, images
    text = re.sub(r'<[^>]+>', '', text)                          # HTML tags
    text = text.strip().lower()
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in '-_ ' or cat[0] in 'LN' or cat == 'Mn':
            kept.append('-' if ch == ' ' else ch)
    return ''.join(kept)


HEADING = re.compile(r'^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$')
HTML_ANCHOR = re.compile(r'<a\s+[^>]*(?:name|id)="([^"]+)"', re.I)


def anchors(path, cache={}):
    if path not in cache:
        seen, found = {}, set()
        lines = prose(path)
        for i, (_, text) in enumerate(lines):
            m = HEADING.match(text)
            title = m.group(2) if m else None
            # setext: a line of text underlined by === or ---
            if not m and i + 1 < len(lines) and text.strip() and \
                    re.match(r'^ {0,3}(=+|-+)[ \t]*$', lines[i + 1][1]) and \
                    not re.match(r'^ {0,3}([-*+]|\d+[.)]|\|)', text):
                title = text
            if title is not None:
                s = slug(title)
                k = seen.get(s, 0)
                found.add(s if k == 0 else '%s-%d' % (s, k))
                seen[s] = k + 1
            found.update(a.lower() for a in HTML_ANCHOR.findall(text))
        cache[path] = found
    return cache[path]


INLINE_LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+"[^"]*")?\s*\)')
REF_DEF = re.compile(r'^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)')


def check_links(files):
    problems = []
    for path in files:
        base = os.path.dirname(path)
        for n, text in prose(path):
            text = strip_code_spans(text)
            targets = [m.group(1) for m in INLINE_LINK.finditer(text)]
            m = REF_DEF.match(text)
            if m:
                targets.append(m.group(1))
            for target in targets:
                target = target.strip('<>')
                if re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*:', target):
                    continue                    # http:, mailto:, ...
                file_part, _, frag = target.partition('#')
                file_part = urllib.parse.unquote(file_part.split('?')[0])
                dest = os.path.normpath(os.path.join(base, file_part)) if file_part else path
                if file_part.startswith('/'):
                    problems.append('%s:%d: link %s: absolute path, not relative' % (path, n, target))
                    continue
                if not os.path.exists(dest):
                    problems.append('%s:%d: link %s: no such file: %s' % (path, n, target, dest))
                    continue
                if frag and dest.endswith('.md') and os.path.isfile(dest):
                    frag = urllib.parse.unquote(frag).lower()
                    if frag not in anchors(dest):
                        problems.append('%s:%d: link %s: no heading with anchor #%s in %s'
                                        % (path, n, target, frag, dest))
    return problems


MAKE_CMD = re.compile(r'(?:^|[\s;&|(])make((?:[ \t]+[^\s;&|)#`]+)*)')
MAN_LITERAL = re.compile(r'^\.(?:Dl|D1|Ql|Ic|Cm|Li|Sy|Nm)\s')


def make_commands(path):
    """(line number, code text) of the code that may name make targets."""
    out = []
    if not path.endswith('.md'):
        literal = False
        with open(path, encoding='utf-8') as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip('\n')
                if re.match(r'^\.(Bd\s+-(literal|unfilled)|nf)\b', line):
                    literal = True
                elif re.match(r'^\.(Ed|fi)\b', line):
                    literal = False
                elif literal or MAN_LITERAL.match(line):
                    text = re.sub(r'^\.[A-Z][a-z]\s+', '', line)
                    out.append((n, re.sub(r'\s(Ns|Ar|Cm|Fl)\s', ' ', text)))
        return out
    fenced = {n for n, _, code in md_lines(path) if code}
    with open(path, encoding='utf-8') as f:
        all_lines = f.read().split('\n')
    prev_blank = True
    for n, text in prose(path):
        # an indented block, when it starts with a command: "    make deb"
        if re.match(r'^(?: {4,}|\t)(?:\$ |sudo )?make\b', text) and prev_blank:
            out.append((n, text))
        else:
            out.extend((n, m.group(2)) for m in CODE_SPAN.finditer(text))
        prev_blank = text.strip() == '' or (prev_blank and re.match(r'^(?: {4,}|\t)', text))
    for n in sorted(fenced):
        out.append((n, all_lines[n - 1]))
    return out


OPTS_WITH_ARG = {'-C', '-f', '-I', '-j', '-l', '-o', '-W'}


def named_targets(code):
    for m in MAKE_CMD.finditer(code):
        words, skip = m.group(1).split(), False
        for w in words:
            if skip:
                skip = False
            elif w in OPTS_WITH_ARG:
                skip = True
            elif w.startswith('-') or '=' in w:
                continue
            else:
                yield w


def make_targets(makefile):
    """The targets make knows: its database, without files that are only prerequisites."""
    directory = os.path.dirname(os.path.abspath(makefile))
    db = subprocess.run(['make', '-pRrq', '-f', os.path.basename(makefile), ':'],
                        cwd=directory, capture_output=True, text=True).stdout
    targets, not_target = set(), False
    for line in db.split('\n'):
        if line.startswith('# Not a target:'):
            not_target = True
            continue
        m = re.match(r'^([^#.\t =][^=]*?)::?(?:[^=]|$)', line)
        if m and not not_target:
            for t in m.group(1).split():
                targets.add(os.path.relpath(t, directory) if os.path.isabs(t) else t)
        not_target = False
    return targets


def check_targets(makefile, allow, files):
    known = make_targets(makefile)
    if not known:
        return ['%s: make listed no targets' % makefile]
    patterns = [t for t in known if '%' in t]
    problems = []
    for path in files:
        for n, code in make_commands(path):
            for t in named_targets(code):
                if t in known or t in allow or \
                        any(fnmatch.fnmatchcase(t, p.replace('%', '*')) for p in patterns):
                    continue
                problems.append('%s:%d: make %s: no such target in %s' % (path, n, t, makefile))
    return problems


def main(argv):
    if len(argv) >= 1 and argv[0] == 'slug':
        for h in argv[1:]:
            print(slug(h))
        return 0
    if len(argv) >= 2 and argv[0] == 'links':
        problems = check_links(argv[1:])
    elif len(argv) >= 3 and argv[0] == 'targets':
        args, allow, makefile = argv[1:], set(), None
        while args and args[0].startswith('--'):
            if args[0] == '--allow' and len(args) > 1:
                allow.add(args[1])
            elif args[0] == '--makefile' and len(args) > 1:
                makefile = args[1]
            else:
                break
            args = args[2:]
        if makefile is None or not args:
            print(__doc__.strip(), file=sys.stderr)
            return 2
        problems = check_targets(makefile, allow, args)
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
