"""Where a finished job's output files end up, and the URLs its `outputs` field holds.

    storage = make_storage(settings, results_base_url)      # or StorageConfig.from_settings(...).make() in a worker
    urls = storage.store(job_id, outputs, outputs_dir)   # cwltool's output object (Files carry a local `path`)
                                                         # and the job's outputs folder they lie in

`urls` maps each output id to a URL, or to a list of URLs for an array of Files or a Directory (the files within,
in order). `LocalStorage` (the default) leaves files in the job folder and returns this server's result URLs;
`S3Storage` uploads them to `s3://<bucket>/<prefix>/<job id>/<output id>/<name>` and returns presigned GET URLs
(moto locally, real S3 in AWS). Either way the URLs go into the job's `outputs`, so clients never care which.

Null outputs (an optional output the tool did not produce) get no entry.
"""

from __future__ import annotations

import json
import mimetypes
import os
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ades.config import Settings

if TYPE_CHECKING:
    from ades.results_manifest import Manifest, StoredFile

MEDIA_TYPES_IRI = "media-types/"
_EXTRA_TYPES = {
    ".tif": "image/tiff", ".tiff": "image/tiff", ".geojson": "application/geo+json", ".json": "application/json",
    ".nc": "application/netcdf", ".jp2": "image/jp2", ".parquet": "application/vnd.apache.parquet",
    ".yaml": "application/yaml", ".yml": "application/yaml", ".cwl": "application/cwl", ".md": "text/markdown",
}


class StorageError(RuntimeError):
    """An output could not be stored; `str()` names the output and the reason."""


class OutputStorage(Protocol):
    def store(self, job_id: str, outputs: dict[str, Any], outputs_dir: Path) -> dict[str, Any]:
        """Output id -> URL (or list of URLs); raises StorageError."""
        ...


# --- cwltool's output object -----------------------------------------------------------------------------------
def is_file(value: Any) -> bool:
    return isinstance(value, dict) and value.get("class") == "File"


def is_directory(value: Any) -> bool:
    return isinstance(value, dict) and value.get("class") == "Directory"


def local_path(value: dict[str, Any]) -> Path | None:
    """The file's local path: `path`, else a file:// `location`."""
    if isinstance(value.get("path"), str):
        return Path(value["path"])
    location = value.get("location")
    if isinstance(location, str) and location.startswith("file:"):
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(location).path))
    return None


def files_of(value: Any) -> list[dict[str, Any]] | None:
    """The File objects of an output that is an array of Files (nested arrays flattened) or a Directory (its files,
    recursively, by path); None for a single File or a plain value."""
    if is_directory(value):
        root = local_path(value)
        listing = value.get("listing")
        if listing is None and root is not None and root.is_dir():
            # cwltool lists a Directory only when asked to: read it from disk, in a stable order
            return [{"class": "File", "path": str(p), "basename": p.name}
                    for p in sorted(root.rglob("*")) if p.is_file()]
        found: list[dict[str, Any]] = []
        for item in listing or []:
            found.extend([item] if is_file(item) else files_of(item) or [])
        # by path, as when read from disk: URLs keep one order whether or not cwltool listed the Directory
        return sorted(found, key=lambda f: str(local_path(f) or f.get("basename") or ""))
    if isinstance(value, list) and value and all(is_file(v) or isinstance(v, list) for v in value):
        flat: list[dict[str, Any]] = []
        for item in value:
            nested = files_of(item) if isinstance(item, list) else [item]
            if nested is None:
                return None
            flat.extend(nested)
        return flat
    return None


def media_type(value: dict[str, Any]) -> str:
    """A File's media type: the CWL `format` when it is an IANA media type IRI, else from the file name."""
    fmt = value.get("format")
    if isinstance(fmt, str) and MEDIA_TYPES_IRI in fmt:
        return fmt.split(MEDIA_TYPES_IRI, 1)[1]
    name = str(value.get("basename") or local_path(value) or "")
    suffix = Path(name).suffix.lower()
    return _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _basename(value: dict[str, Any]) -> str:
    path = local_path(value)
    return str(value.get("basename") or (path.name if path else "") or "file")


# --- local -------------------------------------------------------------------------------------------------------
class LocalStorage:
    """Files stay in the job's outputs folder; URLs point at this server: `/jobs/{id}/results/{output}` for one File
    or a value, `/jobs/{id}/files/{path}` (relative to the outputs folder) for each file of an array or Directory."""

    def __init__(self, results_base_url: str) -> None:
        self.base = results_base_url.rstrip("/")

    def store(self, job_id: str, outputs: dict[str, Any], outputs_dir: Path) -> dict[str, Any]:
        outputs_dir = outputs_dir.resolve()
        urls: dict[str, Any] = {}
        for output_id, value in outputs.items():
            if value is None:
                continue
            many = files_of(value)
            if many is None:
                urls[output_id] = f"{self.base}/jobs/{job_id}/results/{urllib.parse.quote(output_id)}"
            else:
                urls[output_id] = [self._file_url(job_id, output_id, f, outputs_dir) for f in many]
        return urls

    def _file_url(self, job_id: str, output_id: str, value: dict[str, Any], outputs_dir: Path) -> str:
        path = local_path(value)
        try:
            relative = path.resolve().relative_to(outputs_dir) if path else None
        except ValueError:
            relative = None
        if relative is None:
            # the /files route serves only what lies under the job's outputs folder
            raise StorageError(f"output {output_id!r}: {path} is not in the job's outputs folder {outputs_dir}")
        return f"{self.base}/jobs/{job_id}/files/{urllib.parse.quote(relative.as_posix())}"


# --- S3 ----------------------------------------------------------------------------------------------------------
_FOR_CHILDREN: dict[tuple[str, bool], tuple[int, Any]] = {}
"""Clients made by a launcher for the job children it forks (key -> (maker's pid, client)): making one costs about
100 ms of CPU (botocore loads the S3 model), which each job child would pay again. The maker never uses them, so no
connection is shared across the fork; only a forked child takes one."""


def prepare_for_children(config: StorageConfig) -> None:
    """Make the job children forked from this process find their S3 client ready (no network here)."""
    key = (config.model_dump_json(), False)
    if config.kind == "s3" and key not in _FOR_CHILDREN:
        _FOR_CHILDREN[key] = (os.getpid(), s3_client(config))


def s3_client(settings: Settings | StorageConfig, public: bool = False) -> Any:
    """An S3 client; `public`: one whose presigned URLs name the endpoint clients reach (ADES_AWS_PUBLIC_ENDPOINT_URL)
    -- presigning is local, so it never connects there itself."""
    import boto3
    from botocore.config import Config

    if isinstance(settings, Settings):
        settings = StorageConfig.from_settings(settings, "")
    inherited = _FOR_CHILDREN.get((settings.model_dump_json(), public))
    if inherited is not None and inherited[0] != os.getpid():
        return inherited[1]
    endpoint = (settings.aws_public_endpoint_url if public else None) or settings.aws_endpoint_url
    config = Config(
        region_name=settings.aws_region,
        connect_timeout=settings.aws_timeout,
        read_timeout=settings.aws_timeout * 6,  # a part of a large upload may take a while to be acknowledged
        retries={"max_attempts": settings.aws_max_attempts, "mode": "standard"},
        # SigV4 presigned URLs: required by newer regions and KMS-encrypted buckets, and allow the 7 day maximum
        signature_version="s3v4",
        s3={"addressing_style": "path"} if endpoint else {},
    )
    kwargs: dict[str, Any] = {"config": config}
    if endpoint:
        # moto accepts any credentials; real AWS takes them from the normal chain (role, profile, environment)
        kwargs.update(endpoint_url=endpoint, aws_access_key_id="ades-local", aws_secret_access_key="ades-local")
    return boto3.session.Session().client("s3", **kwargs)


class S3Storage:
    """Uploads every output file to `s3://<bucket>/<prefix>/<job id>/<output id>/<name>` and returns presigned GET
    URLs valid for `expiry` seconds. `<name>` is the basename for one File, `<i>/<basename>` for the i-th File of
    an array, the path inside the directory for a Directory's files. A plain value (string, number, record) is
    uploaded as `<output id>/value.json`. Local files are left in place (the job folder is still the server's)."""

    def __init__(self, bucket: str, prefix: str = "jobs", expiry: int = 604800, client: Any = None,
                 settings: Settings | StorageConfig | None = None) -> None:
        if client is None and settings is None:
            raise ValueError("S3Storage needs a boto3 S3 client or Settings to make one")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.expiry = expiry
        self.s3 = client if client is not None else s3_client(settings)  # type: ignore[arg-type]
        public = settings is not None and settings.aws_public_endpoint_url
        self.presigner = s3_client(settings, public=True) if public else self.s3  # type: ignore[arg-type]

    def key(self, job_id: str, output_id: str, name: str) -> str:
        parts = [self.prefix, job_id, output_id, name.lstrip("/")]
        return "/".join(p for p in parts if p)

    def ensure_bucket(self, region: str = "us-east-1") -> None:
        """Create the bucket if it is missing (local setups; in AWS the stack creates it)."""
        try:
            self.s3.head_bucket(Bucket=self.bucket)
            return
        except Exception as err:  # botocore's ClientError: 404/403, told apart below
            code = str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise StorageError(f"bucket {self.bucket!r}: {err}") from err
        extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        self.s3.create_bucket(Bucket=self.bucket, **extra)

    def store(self, job_id: str, outputs: dict[str, Any], outputs_dir: Path) -> dict[str, Any]:
        """Upload the outputs, then the job's manifest (ades.results_manifest), which lets any node serve them."""
        urls: dict[str, Any] = {}
        uploaded: dict[Path, StoredFile] = {}
        for output_id, value in outputs.items():
            if value is None:
                continue
            if is_file(value):
                urls[output_id] = self._upload_file(job_id, output_id, value, _basename(value), uploaded)
            elif is_directory(value):
                urls[output_id] = self._upload_directory(job_id, output_id, value, uploaded)
            else:
                many = files_of(value)
                if many is not None:
                    urls[output_id] = [self._upload_file(job_id, output_id, f, f"{i}/{_basename(f)}", uploaded)
                                       for i, f in enumerate(many)]
                else:
                    urls[output_id] = self._upload_value(job_id, output_id, value)
        self.put_manifest(job_id, outputs, outputs_dir, uploaded)
        return urls

    def put_manifest(self, job_id: str, outputs: dict[str, Any], outputs_dir: Path,
                     uploaded: dict[Path, StoredFile]) -> None:
        # imported here: the manifest module builds on this one
        from ades.results_manifest import MANIFEST_NAME, build

        manifest = build(job_id, outputs, outputs_dir, uploaded)
        key = self.key(job_id, "", MANIFEST_NAME)
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=manifest.model_dump_json(),
                               ContentType="application/json")
        except Exception as err:  # botocore raises many types; the runner needs one
            raise StorageError(f"the results manifest could not be uploaded to s3://{self.bucket}/{key}: "
                               f"{err}") from err

    def manifest(self, job_id: str) -> Manifest | None:
        """The job's results manifest, or None when the job has none (it ran before
        manifests were written, or its objects were removed). Raises StorageError when storage cannot be read."""
        from ades.results_manifest import MANIFEST_NAME, Manifest

        key = self.key(job_id, "", MANIFEST_NAME)
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as err:  # botocore's ClientError, told apart by its code
            if str(getattr(err, "response", {}).get("Error", {}).get("Code", "")) in ("NoSuchKey", "404",
                                                                                       "NoSuchBucket"):
                return None
            raise StorageError(f"could not read s3://{self.bucket}/{key}: {err}") from err
        try:
            return Manifest.model_validate_json(body)
        except ValidationError as err:
            raise StorageError(f"s3://{self.bucket}/{key} is not a results manifest: {err}") from err

    def open(self, key: str) -> Any:
        """The object's body, a stream (botocore's StreamingBody). Raises StorageError."""
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as err:  # botocore raises many types; the caller needs one
            raise StorageError(f"could not read s3://{self.bucket}/{key}: {err}") from err

    def job_keys(self, job_id: str) -> list[str]:
        """The keys of every object stored for the job (outputs, secondary files, values); none when the bucket
        does not exist. Raises StorageError."""
        prefix = f"{self.prefix}/{job_id}/" if self.prefix else f"{job_id}/"
        keys: list[str] = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
        except Exception as err:  # botocore's ClientError, told apart by its code
            if str(getattr(err, "response", {}).get("Error", {}).get("Code", "")) == "NoSuchBucket":
                return []
            raise StorageError(f"could not list s3://{self.bucket}/{prefix}: {err}") from err
        return keys

    def delete_keys(self, keys: list[str]) -> None:
        """Delete the objects (1,000 a request, S3's most). Raises StorageError naming the first key refused."""
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            try:
                answer = self.s3.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": key} for key in chunk], "Quiet": True})
            except Exception as err:  # botocore raises many types; the caller needs one
                raise StorageError(f"could not delete objects of s3://{self.bucket}: {err}") from err
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise StorageError(f"could not delete s3://{self.bucket}/{first.get('Key')}: {first.get('Message')}")

    def presign(self, key: str, content_type: str | None = None, disposition: str | None = None) -> str:
        """A GET URL of the object valid `expiry` seconds; `content_type` and `disposition` override the stored
        Content-Type and the Content-Disposition of the answer."""
        params = {"Bucket": self.bucket, "Key": key}
        if content_type:
            params["ResponseContentType"] = content_type
        if disposition:
            params["ResponseContentDisposition"] = disposition
        return str(self.presigner.generate_presigned_url("get_object", Params=params, ExpiresIn=self.expiry))

    def _upload_file(self, job_id: str, output_id: str, value: dict[str, Any], name: str,
                     uploaded: dict[Path, StoredFile]) -> str:
        path = local_path(value)
        if path is None or not path.is_file():
            raise StorageError(f"output {output_id!r}: no local file to upload ({value.get('location')!r})")
        key = self.key(job_id, output_id, name)
        self._put_path(output_id, path, key, media_type(value), uploaded)
        # secondary files (indexes, sidecars) go beside the primary so relative references keep working
        for extra in value.get("secondaryFiles") or []:
            extra_path = local_path(extra)
            if is_file(extra) and extra_path is not None and extra_path.is_file():
                parent = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
                self._put_path(output_id, extra_path, self.key(job_id, output_id, parent + _basename(extra)),
                               media_type(extra), uploaded)
        return self.presign(key)

    def _upload_directory(self, job_id: str, output_id: str, value: dict[str, Any],
                          uploaded: dict[Path, StoredFile]) -> list[str]:
        root = local_path(value)
        urls = []
        for item in files_of(value) or []:
            path = local_path(item)
            if root is not None and path is not None and path.is_relative_to(root):
                name = f"{root.name}/{path.relative_to(root).as_posix()}"
            else:
                name = _basename(item)
            urls.append(self._upload_file(job_id, output_id, item, name, uploaded))
        return urls

    def _upload_value(self, job_id: str, output_id: str, value: Any) -> str:
        key = self.key(job_id, output_id, "value.json")
        body = json.dumps(value, ensure_ascii=False).encode()
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        except Exception as err:  # botocore raises many types; the runner needs one
            raise StorageError(f"output {output_id!r}: could not upload to s3://{self.bucket}/{key}: {err}") from err
        return self.presign(key)

    def _put_path(self, output_id: str, path: Path, key: str, content_type: str,
                  uploaded: dict[Path, StoredFile]) -> None:
        from ades.results_manifest import StoredFile

        try:
            size = path.stat().st_size
            # upload_file switches to a multipart upload for large files (rasters)
            self.s3.upload_file(str(path), self.bucket, key, ExtraArgs={"ContentType": content_type})
        except Exception as err:  # botocore/s3transfer raise many types; the runner needs one
            raise StorageError(f"output {output_id!r}: could not upload {path.name} to s3://{self.bucket}/{key}: "
                               f"{err}") from err
        uploaded[path] = StoredFile(key=key, size=size, type=content_type)


# --- choosing one -----------------------------------------------------------------------------------------------
class StorageConfig(BaseModel):
    """What a worker needs to build the job's OutputStorage; plain JSON, so it can travel inside a RunSpec to a
    job process or a Dask worker (like SinkConfig)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "s3"] = "local"
    results_base_url: str = Field(description="public URL of the server (LocalStorage URLs)")
    bucket: str | None = None
    prefix: str = "jobs"
    expiry: int = Field(default=604800, ge=1, le=604800)
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    aws_public_endpoint_url: str | None = None
    aws_timeout: float = 10.0
    aws_max_attempts: int = 5

    @model_validator(mode="after")
    def _bucket_for_s3(self) -> StorageConfig:
        if self.kind == "s3" and not self.bucket:
            raise ValueError("ADES_OUTPUT_STORAGE=s3 needs ADES_OUTPUT_BUCKET")
        return self

    @classmethod
    def from_settings(cls, settings: Settings, results_base_url: str) -> StorageConfig:
        return cls(kind=settings.output_storage, results_base_url=results_base_url,
                   bucket=settings.output_bucket, prefix=settings.output_prefix, expiry=settings.presign_expiry,
                   aws_region=settings.aws_region, aws_endpoint_url=settings.aws_endpoint_url,
                   aws_public_endpoint_url=settings.aws_public_endpoint_url, aws_timeout=settings.aws_timeout,
                   aws_max_attempts=settings.aws_max_attempts)

    def make(self) -> OutputStorage:
        if self.kind == "s3" and self.bucket:  # (the validator made sure S3 has a bucket)
            return S3Storage(self.bucket, self.prefix, self.expiry, settings=self)
        return LocalStorage(self.results_base_url)


def make_storage(settings: Settings, results_base_url: str) -> OutputStorage:
    """The storage `settings.output_storage` names. Raises ValueError when S3 is chosen without a bucket."""
    try:
        return StorageConfig.from_settings(settings, results_base_url).make()
    except ValidationError as err:
        raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())) from None
