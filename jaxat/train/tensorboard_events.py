"""TensorBoard event files without TensorFlow: TFRecord framing and Event protos by hand.

An event file is a sequence of TFRecords:
  uint64 length (little endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
where masked_crc32c(b) = rotate_right(crc32c(b), 15) + 0xa282ead8 (mod 2^32), and `data` is
a serialised `tensorflow.Event` protobuf. The first event carries file_version
"brain.Event:2"; every further one a Summary of scalar values:
  Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
  Summary { repeated Value value = 1; }
  Value   { string tag = 1; float simple_value = 2; }
`python -m tensorboard.main --logdir runs/` (or `tensorboard --logdir runs/`) reads them.

`EpochEventWriter(workdir)` mirrors metrics.jsonl as scalars, one event per epoch record.
"""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from typing import Any, Iterable

# --- CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 ------------------------------

_CRC32C_POLY = 0x82F63B78


def _crc32c_table() -> list[int]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
    table.append(crc)
  return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C of `data` (crc32c(b'123456789') == 0xE3069283)."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC: rotate right by 15 bits, add 0xa282ead8 (mod 2^32)."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
  """One TFRecord: length, masked CRC of the length, data, masked CRC of the data."""
  length = struct.pack("<Q", len(data))
  return (length + struct.pack("<I", masked_crc32c(length)) + data
          + struct.pack("<I", masked_crc32c(data)))


# --- protobuf wire format ---------------------------------------------------------------

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
  """Base-128 varint; negative int64 values use their 64-bit two's complement."""
  value &= (1 << 64) - 1
  out = bytearray()
  while True:
    low = value & 0x7F
    value >>= 7
    if value:
      out.append(low | 0x80)
    else:
      out.append(low)
      return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
  return _varint((field << 3) | wire_type)


def _length_delimited(field: int, payload: bytes) -> bytes:
  return _key(field, _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def scalar_value(tag: str, value: float) -> bytes:
  """Summary.Value{tag, simple_value} (simple_value is a float32)."""
  return _length_delimited(1, tag.encode("utf-8")) + _key(2, _FIXED32) + struct.pack("<f", value)


def event(wall_time: float, step: int, *, file_version: str | None = None,
          scalars: Iterable[tuple[str, float]] = ()) -> bytes:
  """A serialised Event with either a file_version or a Summary of scalars."""
  out = _key(1, _FIXED64) + struct.pack("<d", wall_time) + _key(2, _VARINT) + _varint(step)
  if file_version is not None:
    out += _length_delimited(3, file_version.encode("utf-8"))
  values = b"".join(_length_delimited(1, scalar_value(tag, v)) for tag, v in scalars)
  if values:
    out += _length_delimited(5, values)
  return out


# --- epoch records -> scalars -----------------------------------------------------------

# Record fields that are not curves (the step is the event's step; the fingerprint a hash).
_NOT_SCALARS = ("epoch", "fingerprint")


def scalar_tag(name: str) -> str:
  """metrics.jsonl field -> TensorBoard tag, grouped: test_clean_acc -> test/clean_acc,
  val_* -> val/*, lr -> optimizer/lr, images_per_sec and *_seconds -> speed/*, the
  training metrics (loss, clean_acc, adv_acc, method statistics) -> train/*."""
  for prefix in ("test", "val"):
    if name.startswith(prefix + "_"):
      return f"{prefix}/{name[len(prefix) + 1:]}"
  if name in ("lr", "step"):
    return f"optimizer/{name}"
  if name == "images_per_sec" or name.endswith("seconds"):
    return f"speed/{name}"
  return f"train/{name}"


def record_scalars(record: dict[str, Any]) -> list[tuple[str, float]]:
  """(tag, value) of every finite numeric field of an epoch record, sorted by tag."""
  scalars = []
  for name, value in record.items():
    if name in _NOT_SCALARS or isinstance(value, bool) or not isinstance(value, (int, float)):
      continue
    if math.isfinite(value):
      scalars.append((scalar_tag(name), float(value)))
  return sorted(scalars)


EVENT_FILE_PREFIX = "events.out.tfevents."


class EpochEventWriter:
  """Writes `workdir/events.out.tfevents.<time>.<host>.jaxat`, one event per epoch record
  (TensorBoard step = epoch).

  Opening removes earlier jaxat event files of the workdir, so that after a resume (where
  metrics.jsonl was truncated to the checkpoint) the caller replays the kept records
  and the event file mirrors metrics.jsonl exactly, with no duplicated epochs.
  """

  def __init__(self, workdir: str):
    for name in os.listdir(workdir):
      if name.startswith(EVENT_FILE_PREFIX) and name.endswith(".jaxat"):
        os.remove(os.path.join(workdir, name))
    self.path = os.path.join(
        workdir, f"{EVENT_FILE_PREFIX}{int(time.time())}.{socket.gethostname()}.jaxat")
    self._append(event(time.time(), 0, file_version="brain.Event:2"))

  def _append(self, data: bytes) -> None:
    with open(self.path, "ab") as f:
      f.write(tfrecord(data))

  def write(self, record: dict[str, Any], wall_time: float | None = None) -> None:
    """Appends the scalars of an epoch record (flushed at once)."""
    scalars = record_scalars(record)
    if scalars:
      self._append(event(time.time() if wall_time is None else wall_time,
                         int(record["epoch"]), scalars=scalars))
