"""Payload write+verify throughput of PayloadInstaller, beside `dd` writing the same image bytes.

Packs a random-ish USR image (half incompressible, half repetitive, so gzip has real work both ways),
then for each run installs it with PayloadInstaller into USR-B of a fresh sparse CoreOS disk image —
inflate, SHA-256 of the payload, bounded writes, fsync, read-back hash of the slot, ECDSA verify, GPT
update — and, on another fresh disk image in the same directory, times
`dd if=image of=disk bs=1M conv=notrunc,fsync seek=<slot offset> oflag=seek_bytes`.
A third row installs without the read-back, to show what verifying the written bytes costs.
Throughput is image bytes (decompressed) per second, in MB/s (10^6 bytes); ratio = installer / dd.
Runs alternate between the two so page-cache and disk state favour neither; medians are reported.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import load_average, write_result
from locksmith.disk.layout import make_coreos_disk
from locksmith.disk.slots import read_slots
from locksmith.protocol.release import signature_name
from locksmith.updateengine.keys import generate_keypair
from locksmith.updateengine.pack import pack_release
from locksmith.updateengine.payload import PayloadInstaller

RESULTS = Path(__file__).parent / "results" / "payload_throughput.json"
MIB = 1024 * 1024
FEED_CHUNK = 256 * 1024  # what an HTTP download hands the installer at a time


def make_image(path: Path, size_mib: int) -> None:
    filler = (b"usr/lib/libexample.so.1 " * (MIB // 48 + 1))[: MIB // 2]
    with open(path, "wb") as f:
        for i in range(size_mib):
            f.write(hashlib.shake_256(i.to_bytes(8, "little")).digest(MIB // 2))
            f.write(filler)


def run_installer(
    disk: Path, payload: Path, signature: bytes, sha256_b64: str, public_key: Path, readback: bool = True
) -> float:
    _, b = read_slots(disk)
    start = time.perf_counter()
    size = payload.stat().st_size
    with (
        PayloadInstaller(disk, b, size, sha256_b64, public_key, verify_readback=readback) as installer,
        open(payload, "rb") as f,
    ):
        while chunk := f.read(FEED_CHUNK):
            installer.feed(chunk)
        installer.finish(signature)
    return time.perf_counter() - start


def run_dd(disk: Path, image: Path) -> float:
    _, b = read_slots(disk)
    cmd = ["dd", f"if={image}", f"of={disk}", "bs=1M", "conv=notrunc,fsync", f"seek={b.offset}", "oflag=seek_bytes"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.payload_throughput", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256, help="image size (default 256)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--workdir", type=Path, help="where the images go (default: a temporary directory)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.runs < 1:
        parser.error("--size-mib and --runs must be at least 1")
    load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="bench-payload-", dir=args.workdir) as tmp:
        work = Path(tmp)
        image = work / "usr.img"
        make_image(image, args.size_mib)
        generate_keypair(work / "key.pem", work / "key.pub")
        release = pack_release(image, "9999.0.0", work / "key.pem", work / "release")
        payload = work / "release" / release.name
        signature = (work / "release" / signature_name(release.name)).read_bytes()
        times: dict[str, list[float]] = {"installer": [], "no-readback": [], "dd": []}
        for run in range(args.runs):
            order = list(times) if run % 2 == 0 else list(reversed(times))
            for kind in order:
                disk = make_coreos_disk(work / f"disk-{kind}-{run}.img", usr_size_mib=args.size_mib + 8, small=True)
                if kind == "dd":
                    times[kind].append(run_dd(disk, image))
                else:
                    readback = kind == "installer"
                    pub = work / "key.pub"
                    times[kind].append(run_installer(disk, payload, signature, release.sha256, pub, readback))
                disk.unlink()
        installer_s, no_readback_s, dd_s = times["installer"], times["no-readback"], times["dd"]

    mb = release.image_size / 1e6
    inst_mbs, dd_mbs = mb / statistics.median(installer_s), mb / statistics.median(dd_s)
    nrb_mbs = mb / statistics.median(no_readback_s)
    figures = {
        "image_bytes": release.image_size,
        "payload_bytes": release.size,
        "compression_ratio": round(release.size / release.image_size, 3),
        "runs": args.runs,
        "installer_mb_s": round(inst_mbs, 1),
        "dd_mb_s": round(dd_mbs, 1),
        "ratio_installer_to_dd": round(inst_mbs / dd_mbs, 3),
        "installer_no_readback_mb_s": round(nrb_mbs, 1),
        "ratio_no_readback_to_dd": round(nrb_mbs / dd_mbs, 3),
        "installer_seconds": [round(s, 3) for s in installer_s],
        "installer_no_readback_seconds": [round(s, 3) for s in no_readback_s],
        "dd_seconds": [round(s, 3) for s in dd_s],
        "installer_work": "gunzip + SHA-256(payload) + SHA-256(image) + pwrite + fsync + read-back SHA-256 "
        "+ ECDSA-P256 verify + GPT attribute update",
        "dd_work": "dd bs=1M conv=notrunc,fsync of the decompressed image",
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(f"payload throughput: {args.size_mib} MiB image, {release.size / MIB:.1f} MiB payload, {args.runs} runs")
    print(f"{'writer':<28}{'median s':>10}{'MB/s':>10}")
    print(f"{'PayloadInstaller (+verify)':<28}{statistics.median(installer_s):>10.2f}{inst_mbs:>10.1f}")
    print(f"{'  same, without read-back':<28}{statistics.median(no_readback_s):>10.2f}{nrb_mbs:>10.1f}")
    print(f"{'dd bs=1M conv=fsync':<28}{statistics.median(dd_s):>10.2f}{dd_mbs:>10.1f}")
    print(f"ratio installer/dd: {figures['ratio_installer_to_dd']:.3f}   peak RSS {figures['peak_rss_mib']} MiB")
    # Other work on the machine skews both sides; the ratio is the figure to compare.
    measured = "image bytes (decompressed) per second written and verified by PayloadInstaller, beside dd"
    write_result(args.output, "payload_throughput", measured, figures, load_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
