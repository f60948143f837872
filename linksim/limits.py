"""Limits that protect the machine from a scenario file (``docs/errors.md`` lists them).

Each limit is checked before the work it guards, and breaking one is a user error
(:class:`linksim.scenario.ScenarioError`, exit status 2) that names the file, the
line and the field, the limit and the value found.  None of this imports TensorFlow.
"""

from __future__ import annotations

import math
import os

__all__ = ["MAX_SCENARIO_BYTES", "MAX_YAML_ALIASES", "MAX_YAML_NODES", "MAX_YAML_DEPTH", "MAX_SNR_POINTS",
           "MAX_ABS_SNR_DB", "MAX_GRID_POINTS", "MAX_CHANNEL_USES", "MAX_SEED", "MAX_HOPS", "MAX_IMAGES", "LimitError",
           "read_text_capped", "check_yaml_expansion", "non_finite_numbers", "available_memory_bytes",
           "batch_memory_bytes", "unsafe_run_name", "RUN_NAME_ALLOWED", "MAX_NAME_BYTES", "MAX_EPOCHS"]

#: Largest scenario file read (bytes).  Read with this cap, so ``/dev/zero`` or an
#: endless pipe is refused at once instead of filling the memory.
MAX_SCENARIO_BYTES = 1_000_000
#: Most YAML aliases (``*name``) in a scenario file.
MAX_YAML_ALIASES = 100
#: Most YAML nodes once every alias is expanded (alias "bombs" expand exponentially).
MAX_YAML_NODES = 100_000
#: Deepest nesting of YAML lists and mappings.
MAX_YAML_DEPTH = 50
#: Largest |SNR| in dB anywhere an SNR goes: 10^(SNR/10) then stays a normal float32 (1e-30 .. 1e30).
MAX_ABS_SNR_DB = 300.0
#: Most SNR points in ``snr_db`` (and ``quick.snr_db``).
MAX_SNR_POINTS = 10_000
#: Most points of the whole grid: SNR points x rate points x schemes.
MAX_GRID_POINTS = 100_000
#: Most complex channel uses per image (a hard cap; the memory check below applies too).
MAX_CHANNEL_USES = 10_000_000
#: Largest seed: numpy's generators take seeds below 2**32.
MAX_SEED = 2**32 - 1
#: Most training epochs of any model (a typo guard: the shipped models train for at most a few hundred).
MAX_EPOCHS = 100_000
#: Most hops of a multi-hop chain.
MAX_HOPS = 64
#: Most images in ``dataset.test_size`` / ``train_size``.
MAX_IMAGES = 10_000_000


#: What a scenario ``name`` may be (it names the run folder ``runs/<name>``).
#: Longest scenario name (UTF-8 bytes): a folder name may have 255 bytes, and ``_quick`` is added.
MAX_NAME_BYTES = 200
RUN_NAME_ALLOWED = ("a plain name of letters, digits, '-', '_', '.' and spaces, at most 200 bytes, without '/', "
                    "'\\' or control characters (line breaks, tabs), not '.', '..' or starting with '~'")


def unsafe_run_name(name) -> bool:
    """True when ``name`` cannot name a folder directly under ``runs/`` (it would write elsewhere)."""
    text = str(name)
    return (not text.strip() or os.path.isabs(text) or any(ch in text for ch in "/\\\0")
            or text.strip() in (".", "..") or text.startswith("~") or len(text.encode()) > MAX_NAME_BYTES
            or any(ord(ch) < 32 or ord(ch) == 127 for ch in text))


class LimitError(ValueError):
    """A limit broken; ``line`` is the 1-based line where known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def read_text_capped(path: str, limit: int = MAX_SCENARIO_BYTES) -> str:
    """The UTF-8 text of ``path``, reading at most ``limit`` + 1 bytes.

    Raises
    ------
    LimitError
        Larger than ``limit`` (or endless), binary (NUL bytes), or not UTF-8 (the
        message gives the line and the byte).
    FileNotFoundError, IsADirectoryError, PermissionError, OSError
        From opening or reading the file.
    """
    if os.path.isdir(path):
        raise IsADirectoryError(21, "is a folder, not a scenario file", path)
    # A named pipe blocks open() until a writer comes: open it without blocking, then read as usual
    # (a pipe with no writer reads as empty; process substitution, <(...), still works).
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise LimitError(f"file is larger than the {limit:,}-byte limit for scenario files "
                         f"(or endless); a scenario is a short YAML text")
    if b"\0" in data:
        at = data.index(b"\0")
        raise LimitError(f"not a text file: a NUL byte at offset {at} (a scenario is UTF-8 YAML text)",
                         line=data.count(b"\n", 0, at) + 1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LimitError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} cannot be decoded "
                         f"(save the file as UTF-8)", line=data.count(b"\n", 0, exc.start) + 1) from None
    return text.lstrip("\ufeff")


def check_yaml_expansion(text: str) -> None:
    """Refuse YAML whose aliases or nesting would expand beyond the limits.

    Counts the aliases with the event parser (nothing is built), then the nodes of
    the composed document with every alias expanded (memoised, so a bomb is measured
    in linear time, never expanded).

    Raises
    ------
    LimitError
        More than :data:`MAX_YAML_ALIASES` aliases, more than :data:`MAX_YAML_NODES`
        expanded nodes, or nesting deeper than :data:`MAX_YAML_DEPTH`.
    yaml.YAMLError
        A syntax error (the caller reports it).
    """
    import yaml

    aliases = 0
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise LimitError(f"more than {MAX_YAML_ALIASES} YAML aliases (*name); a scenario needs few "
                                 f"(this limit stops alias bombs)", line=event.start_mark.line + 1)
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise LimitError(f"lists and mappings nested deeper than {MAX_YAML_DEPTH} levels",
                                 line=event.start_mark.line + 1)
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    _check_duplicate_keys(root)
    if aliases == 0:
        return
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in open_nodes:
            raise LimitError("a YAML alias refers to a list or mapping that contains it (a recursive structure)",
                             line=node.start_mark.line + 1)
        if key in sizes:
            return sizes[key]
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(n) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        sizes[key] = total
        open_nodes.discard(key)
        if total > MAX_YAML_NODES:
            raise LimitError(f"the YAML aliases expand to more than {MAX_YAML_NODES:,} values (an alias bomb?)",
                             line=node.start_mark.line + 1)
        return total

    if root is not None:
        size(root)


def _check_duplicate_keys(root) -> None:
    """Refuse a mapping that gives the same key twice (YAML parsers keep the last one silently)."""
    import yaml

    seen_nodes: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in first:
                        raise LimitError(f"the key {k.value!r} appears twice in one mapping (first on line "
                                         f"{first[k.value]}); YAML would silently keep only the last one",
                                         line=k.start_mark.line + 1)
                    first[k.value] = k.start_mark.line + 1
                stack.extend((k, v))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def non_finite_numbers(obj, path=()):
    """Yield ``(path, value)`` of every NaN or infinite float in a parsed document."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from non_finite_numbers(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from non_finite_numbers(v, path + (i,))


def available_memory_bytes() -> int | None:
    """The machine's memory: ``MemAvailable`` of /proc/meminfo, else the physical memory (None if unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


def batch_memory_bytes(channel_uses: int, batch_size: int, hops: int = 1) -> int:
    """A floor on the memory one evaluation batch needs for its channel symbols.

    Each image's ``channel_uses`` complex64 symbols (8 bytes) are held several times
    per hop (transmitted, noise, received, the receiver's copies): 4 copies per hop
    plus 4 is a floor, not an estimate of the whole run.
    """
    return int(channel_uses) * int(batch_size) * 8 * (4 * int(hops) + 4)
