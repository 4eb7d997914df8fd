"""Azure Blob Storage (``azure://container/prefix``): credentials, client, object
operations and words, through azure-storage-blob's async client.

Credentials as Meltano resolves them: ``state_backend.azure.storage_account_url`` with the
default Azure credential chain (it wins, as in Meltano), else
``state_backend.azure.connection_string``, else ``AZURE_STORAGE_CONNECTION_STRING``.
Every call passes ``retry_total`` (few retries, short backoff) and every answer marks the
run as progressing through azure-core's ``raw_response_hook`` (``aio.run``).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from state_ext.backends.aio import mark_progress
from state_ext.backends.clouds.base import JSON, Connection, ObjectClient, epoch, md5_of, tuning
from state_ext.backends.clouds.failures import DENIED, MISSING, REJECTED, Translation
from state_ext.errors import ConfigurationError, MissingExtraError

SCHEME, SERVICE, WORD, NAMESPACE = "azure", "Azure Blob", "container", "azure"
WORDS = Translation(
    hint="set state_backend.azure.connection_string, or storage_account_url with a "
         "working Azure credential (environment, managed identity, az login)",
    codes={"ContainerNotFound": MISSING, "AuthenticationFailed": REJECTED,
           "InvalidAuthenticationInfo": REJECTED, "AuthorizationFailure": DENIED,
           "AuthorizationPermissionMismatch": DENIED},
    credential_errors={"CredentialUnavailableError": "authentication failed ({detail})",
                       "ClientAuthenticationError": "authentication failed ({detail})"},
)


def connect(uri: str, options: dict, warn=None) -> Connection:
    try:
        from adlfs import AzureBlobFileSystem
        from azure.storage.blob.aio import BlobServiceClient
    except ImportError:
        raise MissingExtraError("The azure:// state backend", "azure") from None
    import logging

    for noisy in ("azure", "azure.core.pipeline.policies.http_logging_policy", "azure.identity"):
        if logging.getLogger(noisy).level == logging.NOTSET:
            logging.getLogger(noisy).setLevel(logging.WARNING)
    timeout, attempts = tuning(options)
    # azure-storage's ExponentialRetry waits 15 s, then 18 s... by default: keep it short.
    client_kwargs = {"retry_total": attempts - 1, "initial_backoff": 0.5, "increment_base": 2,
                     "connection_timeout": min(timeout, 5.0),
                     "read_timeout": timeout, "user_agent": "state-ext",
                     # every answer (a listing page included) is progress: see aio.run
                     "raw_response_hook": lambda response: mark_progress()}
    account_url = options.get("storage_account_url")
    connection_string = options.get("connection_string") or os.environ.get(
        "AZURE_STORAGE_CONNECTION_STRING")
    secrets: list[str] = []
    if account_url:
        try:
            from azure.identity.aio import DefaultAzureCredential
        except ImportError:
            raise MissingExtraError("The azure:// state backend", "azure") from None
        credential = DefaultAzureCredential()
        account_name = urlsplit(account_url).hostname or "account"
        fs = AzureBlobFileSystem(account_name=account_name.split(".")[0], credential=credential,
                                 skip_instance_cache=True)
        fs.service_client = BlobServiceClient(account_url, credential=credential, **client_kwargs)
        endpoint = account_url
    elif connection_string:
        fields = _parse_connection_string(connection_string)
        secrets = [connection_string] + [fields[k] for k in ("accountkey", "sharedaccesssignature")
                                         if fields.get(k)]
        try:
            fs = AzureBlobFileSystem(connection_string=connection_string, skip_instance_cache=True)
            fs.service_client = BlobServiceClient.from_connection_string(
                connection_string, **client_kwargs)
        except ValueError:
            raise ConfigurationError(
                "state_backend.azure.connection_string is not a valid Azure Storage connection "
                "string"
            ) from None
        endpoint = fs.service_client.url
    else:
        raise ConfigurationError(
            "The azure:// state backend needs state_backend.azure.connection_string, "
            "state_backend.azure.storage_account_url (with the default Azure credential "
            "chain) or AZURE_STORAGE_CONNECTION_STRING"
        )
    return Connection(fs, secrets, endpoint, timeout, attempts)


def _parse_connection_string(text: str) -> dict[str, str]:
    fields = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return fields


class AzureClient(ObjectClient):
    service = SERVICE
    page_size = 5000
    checks_creates = True
    delete_tells = True  # delete_blob with If-Match: 412 for another version, 404 when gone

    def __init__(self, fs, bucket, *, per_call: dict | None = None):
        super().__init__(fs, bucket)
        self.container = fs.service_client.get_container_client(bucket)
        self.per_call = per_call or {}

    def _blob(self, key):
        return self.container.get_blob_client(key)

    async def list_keys(self, prefix):
        return [name async for name in self.container.list_blob_names(
            name_starts_with=prefix or None, results_per_page=self.page_size, **self.per_call)]

    async def get_stamped(self, key):
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = await self._blob(key).download_blob(**self.per_call)
            data = await downloader.readall()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise
            return None
        properties = downloader.properties
        return data, properties.etag, epoch(properties.last_modified)

    def _settings(self, **kwargs):
        from azure.storage.blob import ContentSettings

        return ContentSettings(content_type=JSON, **kwargs)

    async def put(self, key, data):
        await self._blob(key).upload_blob(data, overwrite=True, content_settings=self._settings(),
                                          **self.per_call)

    async def create(self, key, data):
        from azure.core.exceptions import ResourceExistsError

        try:
            result = await self._blob(key).upload_blob(
                data, overwrite=False, content_settings=self._settings(), **self.per_call)
        except ResourceExistsError:
            return None
        return result.get("etag")

    async def create_checked(self, key, data):
        """Put Blob with ``If-None-Match: *`` and a transactional ``Content-MD5`` header
        that the service checks on receipt (``validate_content``); the blob's stored
        Content-MD5 is set to ours too and the one the service answers with is compared."""
        from azure.core.exceptions import ResourceExistsError

        digest = md5_of(data)
        try:
            result = await self._blob(key).upload_blob(
                data, overwrite=False, validate_content=True,
                content_settings=self._settings(content_md5=bytearray(digest)),
                **self.per_call)
        except ResourceExistsError:
            return None
        returned = result.get("content_md5")
        verified = None if not returned else bytes(returned) == digest
        return result.get("etag"), verified

    async def delete(self, key):
        from azure.core.exceptions import ResourceNotFoundError

        try:
            await self._blob(key).delete_blob(**self.per_call)
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise

    async def delete_if(self, key, marker):
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        try:
            await self._blob(key).delete_blob(
                etag=marker, match_condition=MatchConditions.IfNotModified, **self.per_call)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    async def check_bucket(self):
        await self.container.get_container_properties(**self.per_call)

    async def close(self):
        await self.fs.service_client.close()
        credential = getattr(self.fs, "credential", None)
        if credential is not None and hasattr(credential, "close"):
            await credential.close()


def client(connection: Connection, bucket: str) -> AzureClient:
    return AzureClient(connection.fs, bucket,
                       per_call={"retry_total": connection.max_attempts - 1})
