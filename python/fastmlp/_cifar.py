"""CIFAR-10's two distributed formats, read without running anything they contain.

* The binary version (``cifar-10-binary.tar.gz``, directory ``cifar-10-batches-bin``):
  ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin``, each a run of
  3073-byte records: the label, then 1024 red, 1024 green and 1024 blue pixel values of a
  32x32 image, row by row. ``batches.meta.txt`` names the classes, one per line.
* The Python version (``cifar-10-python.tar.gz``, directory ``cifar-10-batches-py``): the
  same batches as pickled dicts (``b"data"``: a uint8 array (10000, 3072) in the same
  channel-plane order, ``b"labels"``: a list of ints) and ``batches.meta``
  (``b"label_names"``). A pickle can run any code when unpickled, so these are never
  unpickled: :func:`read_pickled_batch` interprets the pickle's opcodes itself, knows only
  the few objects a batch is made of (dicts, lists, tuples, strings, numbers and NumPy's
  array and dtype reconstructors, which it rebuilds with ``np.frombuffer``), and refuses
  anything else.

Shape legend: n images, 3 channels (red, green, blue), 32x32 pixels.
"""

from __future__ import annotations

import pickletools

import numpy as np

__all__ = ["IMAGE_SHAPE", "read_binary_batch", "read_pickled_batch", "read_label_names"]

IMAGE_SHAPE = (3, 32, 32)  # as stored: channels first
_PIXELS = 3 * 32 * 32
_RECORD = 1 + _PIXELS


def read_binary_batch(data, name):
    """(images uint8 (n, 3, 32, 32), labels int64 (n,)) of one binary batch's bytes."""
    if len(data) == 0 or len(data) % _RECORD:
        raise ValueError(f"{name}: {len(data)} bytes is not a whole number of CIFAR-10 "
                         f"records of {_RECORD} bytes")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _RECORD)
    labels = records[:, 0].astype(np.int64)
    return _checked(records[:, 1:].reshape(-1, *IMAGE_SHAPE), labels, name)


def read_pickled_batch(data, name):
    """(images uint8 (n, 3, 32, 32), labels int64 (n,)) of one pickled batch's bytes."""
    batch = _SafePickle(data, name).load()
    batch = {_text(k): v for k, v in batch.items()} if isinstance(batch, dict) else {}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{name}: not a CIFAR-10 batch (a dict with b'data' and b'labels')")
    images, labels = batch["data"], batch["labels"]
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != _PIXELS:
        raise ValueError(f"{name}: b'data' must be a uint8 array (n, {_PIXELS})")
    if not isinstance(labels, list) or not all(isinstance(v, int) for v in labels):
        raise ValueError(f"{name}: b'labels' must be a list of integers")
    return _checked(images.reshape(-1, *IMAGE_SHAPE), np.asarray(labels, dtype=np.int64), name)


def read_label_names(data, name, pickled):
    """The ten class names from ``batches.meta.txt`` (text) or ``batches.meta`` (pickle)."""
    if pickled:
        meta = _SafePickle(data, name).load()
        meta = {_text(k): v for k, v in meta.items()} if isinstance(meta, dict) else {}
        names = [_text(n) if isinstance(n, (str, bytes)) else n
                 for n in meta.get("label_names") or []]
    else:
        names = [line.strip() for line in data.decode("ascii").splitlines() if line.strip()]
    if len(names) != 10 or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{name}: expected the names of 10 classes, got {names!r:.200}")
    return names


def _checked(images, labels, name):
    if len(images) != len(labels):
        raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{name}: labels must be 0 to 9, got {int(labels.max())}")
    return np.array(images), labels  # a copy: the batch's buffer can go


class _Array:
    """numpy's ``_reconstruct(ndarray, ...)`` before its state arrives."""


class _DType:
    def __init__(self, code):
        self.code = code  # e.g. "u1", "i8"
        self.order = "|"


# Globals a batch may name, all rebuilt here; nothing is imported from the pickle.
_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",  # protocol 5
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("_codecs", "encode"): "encode",  # how Python 3 writes bytes at protocol 2
}
_MARK = object()


class _SafePickle:
    """A pickle interpreter for data only: containers, scalars, bytes, NumPy arrays."""

    def __init__(self, data, name):
        self.data, self.name = data, name
        self.stack, self.memo = [], {}

    def load(self):
        try:
            for op, arg, _ in pickletools.genops(self.data):
                if op.name == "STOP":
                    return self.stack.pop()
                self._step(op.name, arg)
        except ValueError as e:
            if str(e).startswith(self.name):
                raise
            raise ValueError(f"{self.name}: not a readable CIFAR-10 pickle ({e})") from None
        except (IndexError, KeyError, TypeError) as e:
            raise ValueError(f"{self.name}: malformed pickle ({type(e).__name__}: {e})") from None
        raise ValueError(f"{self.name}: the pickle has no STOP")

    def _refuse(self, what):
        raise ValueError(f"{self.name}: refusing to read {what}; a CIFAR-10 batch holds only "
                         "dicts, lists, strings, numbers and NumPy arrays")

    def _pop_mark(self):
        s = self.stack
        i = max(k for k, v in enumerate(s) if v is _MARK)  # by identity: arrays compare oddly
        items = s[i + 1:]
        del s[i:]
        return items

    def _step(self, name, arg):
        s = self.stack
        if name in _CONSTANTS:
            s.append(_CONSTANTS[name]())
        elif name in _BYTE_STRINGS:  # Python 2's str, read as bytes (as encoding="bytes")
            s.append(arg.encode("latin1") if isinstance(arg, str) else arg)
        elif name in _LITERALS:
            s.append(arg)
        elif name in ("PROTO", "FRAME"):
            pass
        elif name == "MARK":
            s.append(_MARK)
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            self.memo[arg] = s[-1]
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = s[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            s.append(self.memo[arg])
        elif name in _TUPLES:
            n = _TUPLES[name]
            items = s[len(s) - n:] if n else []
            del s[len(s) - n:]
            s.append(tuple(items))
        elif name == "TUPLE":
            s.append(tuple(self._pop_mark()))
        elif name == "LIST":
            s.append(list(self._pop_mark()))
        elif name == "APPEND":
            value = s.pop()
            s[-1].append(value)
        elif name == "APPENDS":
            items = self._pop_mark()
            s[-1].extend(items)
        elif name == "DICT":
            items = self._pop_mark()
            s.append(dict(zip(items[::2], items[1::2])))
        elif name == "SETITEM":
            value, key = s.pop(), s.pop()
            s[-1][key] = value
        elif name == "SETITEMS":
            items = self._pop_mark()
            s[-1].update(zip(items[::2], items[1::2]))
        else:
            self._object_step(name, arg)

    def _object_step(self, name, arg):
        s = self.stack
        if name in ("GLOBAL", "STACK_GLOBAL"):
            module, attr = arg.split(" ", 1) if name == "GLOBAL" else (s.pop(-2), s.pop())
            if (module, attr) not in _GLOBALS:
                self._refuse(f"the object {module}.{attr}")
            s.append(_GLOBALS[(module, attr)])
        elif name == "REDUCE":
            args, fn = s.pop(), s.pop()
            s.append(self._reduce(fn, args))
        elif name == "BUILD":
            state = s.pop()
            s[-1] = self._build(s[-1], state)
        else:
            self._refuse(f"the pickle opcode {name}")

    def _reduce(self, fn, args):
        if fn == "reconstruct" and len(args) == 3 and args[0] == "ndarray":
            return _Array()
        if fn == "frombuffer" and len(args) == 4 and isinstance(args[0], (bytes, bytearray)):
            buf, dtype, shape, order = args
            if not isinstance(dtype, _DType):
                self._refuse("an array without a dtype")
            return self._array(buf, dtype, shape, order == "F")
        if fn == "dtype" and len(args) >= 1 and isinstance(args[0], (str, bytes)):
            return _DType(_text(args[0]))
        if fn == "encode" and len(args) == 2 and args[1] == "latin1" and isinstance(args[0], str):
            return args[0].encode("latin1")
        self._refuse(f"a call of {fn!r}")

    def _build(self, obj, state):
        if isinstance(obj, _DType) and isinstance(state, tuple) and len(state) > 1:
            order = _text(state[1]) if isinstance(state[1], (str, bytes)) else "|"
            obj.order = order if order in ("<", ">") else "|"
            return obj
        if isinstance(obj, _Array) and isinstance(state, tuple) and len(state) == 5:
            _, shape, dtype, fortran, raw = state
            if not isinstance(dtype, _DType) or not isinstance(raw, (bytes, str)):
                self._refuse("an array of objects")
            return self._array(raw.encode("latin1") if isinstance(raw, str) else raw, dtype,
                               shape, fortran)
        self._refuse(f"the state of {type(obj).__name__}")

    def _array(self, raw, dtype, shape, fortran):
        dt = np.dtype((dtype.order if dtype.order != "|" else "") + dtype.code)
        if dt.kind not in "biuf":
            self._refuse(f"an array of dtype {dt}")
        if not isinstance(shape, tuple) or not all(isinstance(v, int) and v >= 0 for v in shape):
            raise ValueError(f"{self.name}: an array's shape is {shape!r}")
        return np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if fortran else "C")


_CONSTANTS = {"EMPTY_DICT": dict, "EMPTY_LIST": list, "NONE": lambda: None,
              "NEWTRUE": lambda: True, "NEWFALSE": lambda: False}
_BYTE_STRINGS = {"BINSTRING", "SHORT_BINSTRING", "STRING"}
_LITERALS = {"BININT", "BININT1", "BININT2", "LONG1", "LONG4", "INT", "LONG", "BINFLOAT",
             "FLOAT", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE", "BINBYTES",
             "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"}


def _text(v):
    return v.decode("latin1") if isinstance(v, bytes) else v
_TUPLES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
