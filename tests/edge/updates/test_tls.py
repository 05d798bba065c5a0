"""MQTT over TLS (mutual) with certificates made here, on a real Mosquitto TLS listener; the
HTTPS artifact route with the same CA. Clients without the CA, with another CA, or without a
client certificate are refused."""

from __future__ import annotations

import datetime
import ipaddress
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.edge.updates.staging import StagedBlob
from edgecascade.edge.updates.transports.http_range import HttpRangeTransport
from edgecascade.shared.errors import UpdateError
from edgecascade.shared.mqtt import MqttConnection, MqttSettings
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.updates.artifact_server import ArtifactServer
from tests.edge.updates.helpers import FLEET, Device, make_profile, start_fleet, wait_until


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_pki(folder: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and an unrelated CA."""
    folder.mkdir(parents=True, exist_ok=True)

    def pem(cert: x509.Certificate, name: str) -> Path:
        (folder / name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return folder / name

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("edgecascade test CA", ca_key, None, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    san: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    server = _cert("127.0.0.1", server_key, (ca.subject, ca_key), san=san)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("d1", client_key, (ca.subject, ca_key))
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("some other CA", other_key, None, ca=True)
    return Pki(
        ca=pem(ca, "ca.pem"),
        server_cert=pem(server, "server.pem"),
        server_key=_write_key(server_key, folder / "server.key"),
        client_cert=pem(client, "client.pem"),
        client_key=_write_key(client_key, folder / "client.key"),
        other_ca=pem(other, "other-ca.pem"),
    )


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki):  # type: ignore[no-untyped-def]
    # As root, Mosquitto would drop to user `mosquitto`, which cannot read pytest's 0700 tmp dir.
    user = "user root\n" if os.geteuid() == 0 else ""
    extra = (
        f"{user}listener {{port}} 127.0.0.1\nallow_anonymous true\n"
        f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        "require_certificate true\ntls_version tlsv1.2\n"
    )
    proc = BrokerProcess(extra_config=extra, workdir=tmp_path).start()
    yield proc
    proc.stop()


def test_update_over_mqtt_tls_and_https_and_untrusted_clients_refused(
    tls_broker: BrokerProcess,
    tmp_path: Path,
    pki: Pki,
    signing_key: Ed25519PrivateKey,
    model_v2: Path,
    model_v3: Path,
) -> None:
    port = tls_broker.port
    refused = {
        "no TLS": MqttConnection(MqttSettings(port=port, client_id="plain")),
        "another CA": MqttConnection(
            MqttSettings(
                port=port,
                client_id="other",
                tls_ca=str(pki.other_ca),
                tls_cert=str(pki.client_cert),
                tls_key=str(pki.client_key),
            )
        ),
        "no client certificate": MqttConnection(
            MqttSettings(port=port, client_id="anon", tls_ca=str(pki.ca))
        ),
    }
    for conn in refused.values():
        conn.start()
    tls = {"tls_ca": str(pki.ca), "tls_cert": str(pki.client_cert), "tls_key": str(pki.client_key)}
    profile = make_profile(
        tmp_path, "d1", port, signing_key.public_key(), mqtt=tls, updates={"http_ca": str(pki.ca)}
    )
    device = Device.start(profile)
    fleet = start_fleet(port, signing_key, tmp_path / "fleet", **tls)
    try:
        assert device.connection.connected.is_set()
        wait_until(lambda: "d1" in fleet.board.statuses(), what="status over TLS")
        manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="device:d1", chunk_size=8192)
        signed, _ = fleet.push(manifest, payloads)
        st = fleet.board.wait_for(signed.push_id, ["d1"], 30)["d1"]
        assert st is not None and st.state == "active", st
        assert device.version == "1.1.0"

        # The HTTPS route, verified against the same CA from the profile's [updates] http_ca.
        with ArtifactServer(
            tmp_path / "artifacts", certfile=pki.server_cert, keyfile=pki.server_key
        ) as server:
            fleet.artifacts_dir = server.root
            manifest, payloads = build_manifest(
                model_v3, fleet=FLEET, target="device:d1", route="http", base_url=server.url
            )
            assert server.url.startswith("https://")
            signed, _ = fleet.push(manifest, payloads)
            st = fleet.board.wait_for(signed.push_id, ["d1"], 30)["d1"]
            assert st is not None and st.state == "active", st
            assert device.version == "1.2.0"
            assert server.served.bytes_sent == manifest.artifact.size_bytes
            # Without the fleet's CA (system CAs only) the download is refused, not retried.
            untrusting = HttpRangeTransport(request_timeout_s=2, timeout_s=10)
            staged = StagedBlob(tmp_path / "untrusted.part", manifest.artifact)
            try:
                with pytest.raises(UpdateError, match="TLS to the artifact server failed"):
                    untrusting.fetch(staged, threading.Event(), lambda _: None)
            finally:
                staged.close()
                untrusting.close()
            assert server.served.bytes_sent == manifest.artifact.size_bytes

        for what, conn in refused.items():
            assert not conn.connected.is_set(), f"a client with {what} was let in"
    finally:
        for conn in refused.values():
            conn.stop()
        device.stop()
        fleet.connection.stop()
