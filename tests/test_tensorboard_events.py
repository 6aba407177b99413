"""TensorBoard event files written by hand: the bytes are checked against an independent
decoder written here (bitwise CRC-32C, protobuf wire format), and, where the tensorboard
package is installed, read back with its own EventFileLoader; the training loop writes one
event per metrics.jsonl record, also after a resume."""

import glob
import json
import struct

import pytest

from jaxat.train import tensorboard_events as tb
from tiny_runs import tiny_config


def bitwise_crc32c(data: bytes) -> int:
  """CRC-32C bit by bit (no table), independent of the encoder's implementation."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc ^= byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
  return crc ^ 0xFFFFFFFF


def unmask(masked: int) -> int:
  rotated = (masked - 0xA282EAD8) & 0xFFFFFFFF
  return ((rotated << 15) | (rotated >> 17)) & 0xFFFFFFFF


def read_records(blob: bytes) -> list[bytes]:
  """TFRecord framing, every CRC verified."""
  records, offset = [], 0
  while offset < len(blob):
    length_bytes = blob[offset:offset + 8]
    (length,) = struct.unpack("<Q", length_bytes)
    (length_crc,) = struct.unpack("<I", blob[offset + 8:offset + 12])
    assert unmask(length_crc) == bitwise_crc32c(length_bytes)
    data = blob[offset + 12:offset + 12 + length]
    (data_crc,) = struct.unpack("<I", blob[offset + 12 + length:offset + 16 + length])
    assert unmask(data_crc) == bitwise_crc32c(data)
    records.append(data)
    offset += 16 + length
  return records


def read_varint(data: bytes, offset: int) -> tuple[int, int]:
  value, shift = 0, 0
  while True:
    byte = data[offset]
    offset += 1
    value |= (byte & 0x7F) << shift
    shift += 7
    if not byte & 0x80:
      return value, offset


def fields(message: bytes) -> list[tuple[int, object]]:
  """(field number, value) of a protobuf message: ints, bytes, or raw 4/8-byte chunks."""
  out, offset = [], 0
  while offset < len(message):
    key, offset = read_varint(message, offset)
    number, wire = key >> 3, key & 7
    if wire == 0:
      value, offset = read_varint(message, offset)
    elif wire == 1:
      value, offset = message[offset:offset + 8], offset + 8
    elif wire == 5:
      value, offset = message[offset:offset + 4], offset + 4
    else:
      assert wire == 2
      length, offset = read_varint(message, offset)
      value, offset = message[offset:offset + length], offset + length
    out.append((number, value))
  return out


def decode_event(data: bytes) -> dict:
  event = {"scalars": {}}
  for number, value in fields(data):
    if number == 1:
      event["wall_time"] = struct.unpack("<d", value)[0]
    elif number == 2:
      event["step"] = value
    elif number == 3:
      event["file_version"] = value.decode()
    elif number == 5:
      for _, summary_value in fields(value):
        parts = dict(fields(summary_value))
        event["scalars"][parts[1].decode()] = struct.unpack("<f", parts[2])[0]
  return event


def decode_file(path) -> list[dict]:
  with open(path, "rb") as f:
    return [decode_event(record) for record in read_records(f.read())]


def test_crc32c_known_value_and_encoder_bytes_decode():
  assert tb.crc32c(b"123456789") == 0xE3069283 == bitwise_crc32c(b"123456789")
  data = tb.event(1234.5, 300, scalars=[("train/loss", 0.25), ("optimizer/lr", 0.1)])
  event = decode_event(read_records(tb.tfrecord(data))[0])
  assert event["wall_time"] == 1234.5 and event["step"] == 300
  assert event["scalars"] == {"train/loss": 0.25, "optimizer/lr": pytest.approx(0.1)}


def test_epoch_writer_mirrors_records(tmp_path):
  writer = tb.EpochEventWriter(str(tmp_path))
  writer.write({"epoch": 1, "step": 10, "lr": 0.5, "loss": 2.0, "test_clean_acc": 0.75,
                "images_per_sec": 100.0, "train_seconds": None, "fingerprint": "ab12",
                "adv_acc": float("nan")})
  events = decode_file(writer.path)
  assert events[0]["file_version"] == "brain.Event:2"
  assert events[1]["step"] == 1
  assert events[1]["scalars"] == {"optimizer/lr": 0.5, "optimizer/step": 10.0, "train/loss": 2.0,
                                  "test/clean_acc": 0.75, "speed/images_per_sec": 100.0}
  # Reopening (a resume) starts a fresh file: the loop replays the kept records.
  again = tb.EpochEventWriter(str(tmp_path))
  assert glob.glob(str(tmp_path / "events.out.tfevents.*")) == [again.path]


def test_tensorboard_reads_the_file(tmp_path):
  loader_module = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
  writer = tb.EpochEventWriter(str(tmp_path))
  writer.write({"epoch": 3, "step": 30, "loss": 1.5})
  events = list(loader_module.LegacyEventFileLoader(writer.path).Load())
  assert events[0].file_version == "brain.Event:2"
  assert events[1].step == 3
  assert [(v.tag, v.simple_value) for v in events[1].summary.value] == [
      ("optimizer/step", 30.0), ("train/loss", 1.5)]


@pytest.mark.slow
def test_training_writes_one_event_per_metrics_record(tmp_path):
  from jaxat.train.train import train_and_evaluate
  workdir = tmp_path / "run"
  config = tiny_config("pgd_at", **{"num_epochs": 2, "model.channels": (4, 8)})
  # The second call resumes the finished run: the events are replayed, not duplicated.
  for _ in range(2):
    train_and_evaluate(config, str(workdir))
    paths = glob.glob(str(workdir / "events.out.tfevents.*"))
    assert len(paths) == 1
    events = decode_file(paths[0])[1:]
    with open(workdir / "metrics.jsonl") as f:
      records = [json.loads(line) for line in f]
    assert [e["step"] for e in events] == [r["epoch"] for r in records] == [1, 2]
    for event, record in zip(events, records):
      assert event["scalars"]["train/loss"] == pytest.approx(record["loss"], rel=1e-6)
      assert event["scalars"]["optimizer/lr"] == pytest.approx(record["lr"], rel=1e-6)
      assert event["scalars"]["test/clean_acc"] == pytest.approx(record["test_clean_acc"], rel=1e-6)
