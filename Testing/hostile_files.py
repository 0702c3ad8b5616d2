"""Files an attacker would upload, shared by the server's and the browser UI's security tests."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

MB = 1024 * 1024


def mha_naming(target: str) -> bytes:
    """An 8x8x8 MetaImage header reading its voxels from ``target``, padded to its voxel count (so the old
    completeness check saw a whole file)."""
    header = (f"ObjectType = Image\nNDims = 3\nDimSize = 8 8 8\nElementType = MET_UCHAR\n"
              f"ElementDataFile = {target}\n").encode()
    return header + bytes(512)


def nifti_bomb(path: Path, side: int = 1024) -> Path:
    """A valid .nii.gz of ``side``^3 uint8 zeros (1 GiB declared, about 1 MB on disk), written without ever
    holding the voxels: fully flushed deflate blocks of 1 MiB of zeros are identical, so one is repeated."""
    import nibabel
    header = nibabel.Nifti1Header()
    header.set_data_shape((side,) * 3)
    header.set_data_dtype(np.uint8)
    head = header.binaryblock + bytes(4)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MB)
    first = deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(head)
    with path.open("wb") as stream:
        stream.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + first)
        for _ in range(side ** 3 // MB):
            stream.write(block)
            crc = zlib.crc32(zeros, crc)
        stream.write(deflate.flush() + struct.pack("<II", crc, (len(head) + side ** 3) & 0xFFFFFFFF))
    return path
