"""Package the retraining build's source for AWS CodeBuild and upload it to the data bucket.

CodeBuild cannot take its source from `sam package`, so after `sam deploy` (and after any change to training/,
liteserve_dev/ or the shared package) run `make training-source STACK=liteserve-dev`: it zips the tracked files the
build needs (training/, the packaging path liteserve_dev/, requirements/train.txt, the shared package, the committed
models, examples/ with models' retraining entry points) and puts the zip at the key the template's TrainingSourceKey
parameter names.

    python -m training.source --bucket liteserve-dev-data-123456789012 [--key source/liteserve-training.zip]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import zipfile
from pathlib import Path

# examples/: retraining entry points (and their repository-relative training data) declared by packaged models.
PATHS = (
    "training/",
    "liteserve_dev/",
    "requirements/train.txt",
    "layers/shared/python/",
    "layers/model/models/",
    "examples/",
)
REPO = Path(__file__).resolve().parents[1]


def tracked_files(repo: Path = REPO) -> list[str]:
    """The git-tracked files under PATHS (untracked scratch never ships)."""
    out = subprocess.run(["git", "ls-files", *PATHS], cwd=repo, check=True, capture_output=True, text=True).stdout
    return sorted(line for line in out.splitlines() if line)


def build_zip(files: list[str], repo: Path = REPO) -> bytes:
    """A deflated zip of `files` (paths relative to the repo root)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in files:
            z.write(repo / name, name)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Zip and upload; prints the S3 URI."""
    p = argparse.ArgumentParser(prog="python -m training.source", description=__doc__.split("\n\n")[0])
    p.add_argument("--bucket", required=True, help="the stack's data bucket (<stack>-data-<account>)")
    p.add_argument("--key", default="source/liteserve-training.zip")
    args = p.parse_args(argv)
    import boto3

    files = tracked_files()
    data = build_zip(files)
    boto3.client("s3").put_object(Bucket=args.bucket, Key=args.key, Body=data, ContentType="application/zip")
    print(f"s3://{args.bucket}/{args.key}: {len(files)} files, {len(data) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
