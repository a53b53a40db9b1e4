"""The ``hf`` hub client against a fake Hub on 127.0.0.1 (``hub_server.FakeHub``): never the internet.

Every test runs with the Hugging Face cache, home and token file in tmp dirs, telemetry
off, ``huggingface_hub``'s retry sleeps recorded instead of slept, and a socket guard that
fails the test if anything connects anywhere but loopback.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")
tokenizers = pytest.importorskip("tokenizers")

from tests.adapters.hub_server import FakeHub, isolate_huggingface_hub
from tinkex_cookbook.adapters.hub.hf import HFHubClient
from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.ports.hub import HubClient
from tinkex_cookbook.train.tokenizer_sources import get_tokenizer

TOKEN = "hf_fakeHubTestToken0123456789"
WRONG_TOKEN = "hf_wrongTokenShouldNeverBePrinted42"
REPO = "tinkex/tiny-tokenizer"
NO_CONFIG_REPO = "tinkex/tiny-tokenizer-no-config"
UPLOADS = "tinkex/uploads"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def tiny_tokenizer_json() -> str:
    """A 7-token WordLevel tokenizer: whitespace words, BOS/EOS specials."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "tinkex": 3, "!": 4}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<s>", "</s>")])
    return backend.to_str()


TOKENIZER_JSON = tiny_tokenizer_json().encode()
TOKENIZER_CONFIG = json.dumps({"bos_token": "<s>", "eos_token": {"content": "</s>"}}).encode()
CONFIG = json.dumps({"model_type": "tiny", "vocab_size": 7}).encode()
REPOS = {
    REPO: {"tokenizer.json": TOKENIZER_JSON, "tokenizer_config.json": TOKENIZER_CONFIG, "config.json": CONFIG},
    NO_CONFIG_REPO: {"tokenizer.json": TOKENIZER_JSON},
    UPLOADS: {"README.md": b"# uploads\n"},
}
INFO = {REPO: {"pipeline_tag": "text-generation", "library_name": "transformers", "tags": ["tiny", "test"]}}


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub(REPOS, token=TOKEN, info=INFO) as server:
        yield server


@pytest.fixture(autouse=True)
def isolated(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Fresh fake Hub state, HF dirs in tmp, no telemetry, fast retries, loopback only. Yields the sleeps."""
    hub.reset()
    sleeps = isolate_huggingface_hub(monkeypatch, tmp_path / "hf-home")

    outside: list[object] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock: socket.socket, address: object) -> object:
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            outside.append(address)
            raise RuntimeError(f"test tried to connect to {address!r}, not the fake Hub")
        return real_connect(sock, address)

    def guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK:
            outside.append(name)
            raise RuntimeError(f"test tried to resolve {name!r}, not the fake Hub")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield sleeps
    assert outside == [], f"something left loopback: {outside}"


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def client(hub: FakeHub, cache: Path) -> HFHubClient:
    return HFHubClient(hub.endpoint, token=TOKEN, cache_dir=cache, timeout=5)


def closed_port_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- the port --------------------------------------------------------------------------


def test_is_a_hub_client_and_repr_shows_the_endpoint_only(hub: FakeHub, client: HFHubClient) -> None:
    assert isinstance(client, HubClient)
    assert repr(client) == f"HFHubClient(endpoint={hub.endpoint!r})"
    assert TOKEN not in repr(client) and TOKEN not in str(client)


def test_download_returns_the_file_from_the_cache(hub: FakeHub, client: HFHubClient, cache: Path) -> None:
    path = client.download(REPO, "config.json")
    assert path.read_bytes() == CONFIG
    assert path.is_relative_to(cache) and path.parent.name == hub.head_sha(REPO)
    assert hub.requests == [("HEAD", f"/{REPO}/resolve/main/config.json"), ("GET", f"/{REPO}/resolve/main/config.json")]
    assert set(hub.authorizations) == {f"Bearer {TOKEN}"}


def test_snapshot_holds_every_file(hub: FakeHub, client: HFHubClient) -> None:
    folder = client.snapshot(REPO)
    assert folder.name == hub.head_sha(REPO)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == REPOS[REPO]


def test_model_info(hub: FakeHub, client: HFHubClient) -> None:
    info = client.model_info(REPO)
    assert info.repo_id == REPO
    assert info.revision == hub.head_sha(REPO)
    assert info.files == ("config.json", "tokenizer.json", "tokenizer_config.json")
    assert info.metadata == {
        "pipeline_tag": "text-generation", "library_name": "transformers", "private": "false", "tags": "tiny,test",
    }


def test_upload_then_download_round_trip(hub: FakeHub, client: HFHubClient, tmp_path: Path) -> None:
    before = hub.head_sha(UPLOADS)
    local = tmp_path / "weights.txt"
    local.write_bytes(b"round trip \x00\xff")

    url = client.upload(local, UPLOADS, path_in_repo="ckpt/adapter.bin")

    after = hub.head_sha(UPLOADS)
    assert after != before
    assert url == f"{hub.endpoint}/{UPLOADS}/resolve/{after}/ckpt/adapter.bin"
    assert hub.files(UPLOADS)["ckpt/adapter.bin"] == b"round trip \x00\xff"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:  # the URL serves the file
        assert response.read() == b"round trip \x00\xff"
    assert client.download(UPLOADS, "ckpt/adapter.bin").read_bytes() == b"round trip \x00\xff"
    assert "ckpt/adapter.bin" in client.model_info(UPLOADS).files
    with pytest.raises(LookupError, match="adapter.bin"):  # not at the commit before
        client.download(UPLOADS, "ckpt/adapter.bin", revision=before)


def test_upload_defaults_to_the_file_name_and_a_folder_returns_the_commit_url(
    hub: FakeHub, client: HFHubClient, tmp_path: Path
) -> None:
    (tmp_path / "notes.md").write_text("one")
    client.upload(tmp_path / "notes.md", UPLOADS)
    assert hub.files(UPLOADS)["notes.md"] == b"one"

    folder = tmp_path / "run"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.json").write_text("{}")
    (folder / "sub" / "b.txt").write_text("b")
    url = client.upload(folder, UPLOADS, path_in_repo="runs/1")
    assert url == f"{hub.endpoint}/{UPLOADS}/commit/{hub.head_sha(UPLOADS)}"
    assert {k: v for k, v in hub.files(UPLOADS).items() if k.startswith("runs/")} == {
        "runs/1/a.json": b"{}", "runs/1/sub/b.txt": b"b",
    }
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        client.upload(tmp_path / "missing.bin", UPLOADS)


# -- absent things are LookupError -----------------------------------------------------


def test_missing_file_repo_or_revision_is_a_lookup_error(hub: FakeHub, client: HFHubClient) -> None:
    with pytest.raises(LookupError) as missing_file:
        client.download(REPO, "model.safetensors")
    assert REPO in str(missing_file.value) and "model.safetensors" in str(missing_file.value)
    assert hub.endpoint in str(missing_file.value)

    with pytest.raises(LookupError, match="tinkex/nope"):
        client.download("tinkex/nope", "config.json")
    with pytest.raises(LookupError, match="tinkex/nope"):
        client.model_info("tinkex/nope")
    with pytest.raises(LookupError, match="tinkex/nope"):
        client.snapshot("tinkex/nope")
    with pytest.raises(LookupError, match="v9"):
        client.download(REPO, "config.json", revision="v9")
    with pytest.raises(LookupError, match="tinkex/nope"):  # uploads need an existing repository
        path = Path(client.download(REPO, "config.json"))
        client.upload(path, "tinkex/nope")


def test_an_invalid_repo_id_is_a_config_error(client: HFHubClient) -> None:
    with pytest.raises(ConfigError, match="not a valid repository id"):
        client.download("not//valid", "config.json")


# -- through the tokenizer loader ------------------------------------------------------


def test_get_tokenizer_through_the_client(client: HFHubClient) -> None:
    tokenizer = get_tokenizer(REPO, hub_client=client)
    assert tokenizer.encode("hello tinkex world !") == [1, 3, 2, 4]
    assert tokenizer.decode([1, 2]) == "hello world"
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<s>", "</s>")
    assert tokenizer.bos_token_id == 5 and tokenizer.eos_token_id == 6


def test_get_tokenizer_without_tokenizer_config(hub: FakeHub, client: HFHubClient) -> None:
    tokenizer = get_tokenizer(NO_CONFIG_REPO, hub_client=client)
    assert tokenizer.encode("hello world") == [1, 2]
    assert tokenizer.bos_token is None and tokenizer.eos_token is None
    assert ("HEAD", f"/{NO_CONFIG_REPO}/resolve/main/tokenizer_config.json") in hub.requests


# -- credentials -----------------------------------------------------------------------


def test_a_rejected_token_is_a_config_error_naming_hf_token(hub: FakeHub, cache: Path, tmp_path: Path) -> None:
    wrong = HFHubClient(hub.endpoint, token=WRONG_TOKEN, cache_dir=cache)
    local = tmp_path / "x.txt"
    local.write_text("x")
    calls = {
        "download": lambda: wrong.download(REPO, "config.json"),
        "snapshot": lambda: wrong.snapshot(REPO),
        "model_info": lambda: wrong.model_info(REPO),
        "upload": lambda: wrong.upload(local, UPLOADS),
    }
    for name, call in calls.items():
        with pytest.raises(ConfigError) as caught:
            call()
        message = str(caught.value)
        assert "HF_TOKEN" in message and "401" in message and hub.endpoint in message, name
        assert WRONG_TOKEN not in message and TOKEN not in message, name
    assert WRONG_TOKEN not in repr(wrong)
    assert set(hub.authorizations) == {f"Bearer {WRONG_TOKEN}"}


def test_without_a_token_argument_hf_token_is_used(hub: FakeHub, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    anonymous = HFHubClient(hub.endpoint, cache_dir=cache)
    with pytest.raises(ConfigError, match="HF_TOKEN"):  # the token file is in tmp: no token at all
        anonymous.model_info(REPO)
    assert hub.authorizations == [None]

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert anonymous.model_info(REPO).repo_id == REPO
    assert hub.authorizations[-1] == f"Bearer {TOKEN}"


# -- endpoint and failures -------------------------------------------------------------


def test_endpoint_defaults_to_hf_endpoint_then_huggingface_co(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client reads no environment: the runtime passes the manifest's endpoint, else HF_ENDPOINT."""
    from tinkex_cookbook import Runtime

    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint + "/")
    assert HFHubClient().endpoint == "https://huggingface.co"  # nothing is contacted to build one
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with Runtime.open("test", {"hub_client": "hf"}) as ports:
        from_env = ports.hub_client
        assert isinstance(from_env, HFHubClient) and from_env.endpoint == hub.endpoint
        assert from_env.model_info(REPO).repo_id == REPO
    with Runtime.open("test", {"hub_client": {"adapter": "hf", "endpoint": "http://127.0.0.1:9"}}) as ports:
        assert ports.hub_client.endpoint == "http://127.0.0.1:9"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="HF_ENDPOINT"):
        HFHubClient("ftp://example.org")


def test_server_errors_after_retries_name_the_endpoint(
    hub: FakeHub, client: HFHubClient, isolated: list[float]
) -> None:
    hub.fail_with = 500
    with pytest.raises(ConnectionError) as caught:
        client.download(REPO, "config.json")
    message = str(caught.value)
    assert hub.endpoint in message and "500" in message and "config.json" in message
    heads = [r for r in hub.requests if r[0] == "HEAD"]
    assert len(heads) > 2 and len(isolated) == len(heads) - 2  # huggingface_hub retried, with backoff
    assert sum(isolated) > 10  # seconds it would have slept: why the sleeps are patched out

    hub.requests.clear()
    with pytest.raises(ConnectionError, match="500"):
        client.model_info(REPO)
    assert len(hub.requests) == 1  # repository info is not retried


def test_a_cached_file_survives_the_hub_failing(hub: FakeHub, client: HFHubClient, cache: Path) -> None:
    """huggingface_hub's fallback: a failed metadata request returns the file cached for that revision."""
    first = client.download(REPO, "config.json")
    assert HFHubClient(hub.endpoint, token=WRONG_TOKEN, cache_dir=cache).download(REPO, "config.json") == first
    hub.fail_with = 503
    assert client.download(REPO, "config.json") == first


def test_an_unreachable_endpoint_is_a_connection_error_naming_it(cache: Path) -> None:
    endpoint = closed_port_endpoint()
    unreachable = HFHubClient(endpoint, token=TOKEN, cache_dir=cache)
    with pytest.raises(ConnectionError) as caught:
        unreachable.download(REPO, "config.json")
    assert endpoint in str(caught.value) and "HF_ENDPOINT" in str(caught.value)
    assert TOKEN not in str(caught.value)
    with pytest.raises(ConnectionError, match=endpoint):
        unreachable.model_info(REPO)


def test_the_default_cache_is_hf_hub_cache(hub: FakeHub, tmp_path: Path) -> None:
    path = HFHubClient(hub.endpoint, token=TOKEN).download(REPO, "config.json")
    assert path.is_relative_to(tmp_path / "hf-home" / "hub")


def test_importing_the_adapter_does_not_import_huggingface_hub() -> None:
    code = (
        "import sys, tinkex_cookbook.adapters.hub.hf as hf; hf.HFHubClient('http://127.0.0.1:9'); "
        "assert 'huggingface_hub' not in sys.modules, 'imported eagerly'"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=60)
