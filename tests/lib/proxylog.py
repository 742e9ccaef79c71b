"""The daemon's log lines and config files, as the test suites read and write them.

One parser for every suite: text (`ts level key=value ...`, values quoted with backslash
escapes), JSON (one object per line), each optionally behind journald's `<N>` prefix.
"""
import json
import re

CRASH_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error", "Segmentation fault")

_PAIR = re.compile(r'\s*([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)')
_HEAD = re.compile(r"^(?:<([0-7])>)?(?:(\d{4}-\S+) )?(error|warn|info|debug) ")


def _unescape(v):
    if v.startswith('"'):
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(
            m.group(1), m.group(1)), v[1:-1])
    return v


def parse_log_line(line):
    """One log line as a dict (prio when journald's prefix is there, ts, level, then every
    key); None for lines that are not log lines, {'_bad': line} for ones that do not parse."""
    line = line.rstrip("\n")
    prio = None
    m = re.match(r"^<([0-7])>", line)
    if m and line[m.end():].startswith("{"):
        prio, line = m.group(1), line[m.end():]
    if line.startswith("{"):
        try:
            d = json.loads(line)
        except ValueError:
            return {"_bad": line}
        if prio is not None:
            d["prio"] = prio
        return d
    m = _HEAD.match(line)
    if not m:
        return None
    d, pos = {"ts": m.group(2), "level": m.group(3)}, m.end()
    if m.group(1) is not None:
        d["prio"] = m.group(1)
    while pos < len(line):
        p = _PAIR.match(line, pos)
        if not p or p.end() == pos:
            return {"_bad": line}
        d[p.group(1)] = _unescape(p.group(2))
        pos = p.end()
    return d


def render_ini(sections):
    """{section: {key: value}} as an ini file; a value of None leaves the key out."""
    out = []
    for name, keys in sections.items():
        out.append("[%s]" % name)
        out += ["%s = %s" % (k, v) for k, v in keys.items() if v is not None]
        out.append("")
    return "\n".join(out)
