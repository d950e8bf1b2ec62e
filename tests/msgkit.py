"""Outlook .msg files for tests, written from scratch: a compound file (MS-CFB, version 3) holding
the MAPI property streams of MS-OXMSG. Nothing here reads them; extract-msg does, as for a real one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SECTOR, MINI_SECTOR, MINI_CUTOFF = 512, 64, 4096
FREE, END, FAT_SECTOR, NO_STREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
PT_LONG, PT_UNICODE, PT_BINARY = 0x0003, 0x001F, 0x0102


@dataclass
class _Node:
    name: str
    data: bytes | None = None  # None: a storage
    children: list[_Node] = field(default_factory=list)
    index: int = 0
    start: int = END
    left: int = NO_STREAM
    right: int = NO_STREAM
    child: int = NO_STREAM


def _properties(header: bytes, fixed: dict[int, int], streams: dict[int, bytes]) -> bytes:
    entries = b"".join(struct.pack("<IIQ", tag, 6, value) for tag, value in fixed.items())
    entries += b"".join(struct.pack("<IIII", tag, 6, len(data) + (2 if tag & 0xFFFF == PT_UNICODE else 0), 0)
                        for tag, data in streams.items())  # fmt: skip
    return header + entries


def _string_streams(values: dict[int, str | bytes]) -> dict[int, bytes]:
    return {tag: value.encode("utf-16-le") if isinstance(value, str) else value for tag, value in values.items()}


def _stream_nodes(streams: dict[int, bytes]) -> list[_Node]:
    return [_Node(f"__substg1.0_{tag:08X}", data) for tag, data in streams.items()]


def outlook_message(subject: str, body: str, sender: str, to: str,
                    attachments: list[tuple[str, bytes]] = ()) -> bytes:  # type: ignore[assignment]  # fmt: skip
    """An IPM.Note with plain-text body and file attachments, as Outlook would save it."""
    top = _string_streams({0x001A001F: "IPM.Note", 0x0037001F: subject, 0x1000001F: body, 0x0C1A001F: sender,
                           0x0C1F001F: sender, 0x0E04001F: to})  # fmt: skip
    header = struct.pack("<8sIIII8s", b"", 0, len(attachments), 0, len(attachments), b"")
    root = _Node("Root Entry", None, [_Node("__properties_version1.0", _properties(header, {}, top)), *_stream_nodes(top)])
    root.children.append(_Node("__nameid_version1.0", None, [
        _Node("__substg1.0_00020102", b""), _Node("__substg1.0_00030102", b""), _Node("__substg1.0_00040102", b"")]))  # fmt: skip
    for number, (name, data) in enumerate(attachments):
        streams = _string_streams({0x3707001F: name, 0x3704001F: name[:8], 0x37010102: data,
                                   0x370E001F: "application/octet-stream"})  # fmt: skip
        properties = _properties(b"\0" * 8, {0x37050003: 1, 0x0E210003: number}, streams)
        root.children.append(_Node(f"__attach_version1.0_#{number:08X}", None,
                                   [_Node("__properties_version1.0", properties), *_stream_nodes(streams)]))  # fmt: skip
    return _compound_file(root)


def _key(node: _Node) -> tuple[int, str]:
    return len(node.name), node.name.upper()


def _compound_file(root: _Node) -> bytes:
    nodes: list[_Node] = []

    def number(node: _Node) -> None:
        node.index = len(nodes)
        nodes.append(node)
        for child in node.children:
            number(child)

    number(root)
    for node in nodes:  # siblings as a chain ordered the way readers compare names: a valid search tree
        ordered = sorted(node.children, key=_key)
        if ordered:
            node.child = ordered[0].index
        for a, b in zip(ordered, ordered[1:], strict=False):
            a.right = b.index

    mini = bytearray()
    mini_fat: list[int] = []
    big: list[tuple[_Node, bytes]] = []
    for node in nodes[1:]:
        if node.data is None or not node.data:
            continue
        if len(node.data) < MINI_CUTOFF:
            node.start = len(mini) // MINI_SECTOR
            count = -(-len(node.data) // MINI_SECTOR)
            mini_fat += [node.start + i + 1 for i in range(count - 1)] + [END]
            mini += node.data.ljust(count * MINI_SECTOR, b"\0")
        else:
            big.append((node, node.data))

    sectors: list[bytes] = []
    fat: list[int] = []

    def place(data: bytes) -> int:
        start = len(sectors)
        count = max(1, -(-len(data) // SECTOR))
        for i in range(count):
            sectors.append(data[i * SECTOR : (i + 1) * SECTOR].ljust(SECTOR, b"\0"))
            fat.append(start + i + 1 if i < count - 1 else END)
        return start

    for node, data in big:
        node.start = place(data)
    root.start = place(bytes(mini)) if mini else END
    mini_fat_start = place(b"".join(struct.pack("<I", n) for n in mini_fat)) if mini_fat else END
    mini_fat_sectors = -(-len(mini_fat) * 4 // SECTOR)
    directory = b""
    for node in nodes:
        name = node.name.encode("utf-16-le") + b"\0\0"
        kind = 5 if node is root else (1 if node.data is None else 2)
        size = len(mini) if node is root else len(node.data or b"")
        directory += struct.pack("<64sHBBIII16sIQQIQ", name, len(name), kind, 1, node.left, node.right, node.child,
                                 b"", 0, 0, 0, node.start if size else END, size)  # fmt: skip
    directory_start = place(directory)
    fat_count = 1
    while (len(sectors) + fat_count) * 4 > fat_count * SECTOR:
        fat_count += 1
    fat_start = len(sectors)
    fat += [FAT_SECTOR] * fat_count
    fat += [FREE] * (fat_count * SECTOR // 4 - len(fat))
    fat_bytes = b"".join(struct.pack("<I", n) for n in fat)
    sectors += [fat_bytes[i * SECTOR : (i + 1) * SECTOR] for i in range(fat_count)]
    difat = [fat_start + i for i in range(fat_count)] + [FREE] * (109 - fat_count)
    header = struct.pack("<8s16sHHHHH6sIIIIIIIII", bytes.fromhex("D0CF11E0A1B11AE1"), b"", 0x3E, 3, 0xFFFE, 9, 6, b"",
                         0, fat_count, directory_start, 0, MINI_CUTOFF, mini_fat_start, mini_fat_sectors, END, 0)  # fmt: skip
    header += b"".join(struct.pack("<I", n) for n in difat)
    return header + b"".join(sectors)
