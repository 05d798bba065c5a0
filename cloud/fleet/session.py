"""A fleet command's session with the broker: the connection from the common flags, the signing
FleetManager for commands that publish, and following a push until each device answers."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgecascade.cloud.fleet.manager import FleetManager
    from edgecascade.shared.mqtt import MqttConnection


def fleet_access(args: argparse.Namespace) -> Any:
    """The common settings (flags over EDGECASCADE_FLEET__*), also written back into `args`."""
    from edgecascade.cloud.cli_settings import given_flags, load_settings
    from edgecascade.cloud.fleet.access import ENV_SECTION, FleetAccess

    access = load_settings(
        FleetAccess,
        given_flags(args, FleetAccess),
        section=ENV_SECTION,
        command="edgecascade fleet",
        renamed={"EDGECASCADE_FLEET_PASSWORD": "EDGECASCADE_FLEET__PASSWORD"},
    )
    for name in FleetAccess.model_fields:
        setattr(args, name, getattr(access, name))
    return access


def fleet_connection(args: argparse.Namespace) -> MqttConnection:
    """The fleet's MQTT connection, not started yet (no signing key needed)."""
    import os

    from edgecascade.cloud.fleet.status_board import MAX_PACKET_BYTES
    from edgecascade.shared.mqtt import MqttConnection, MqttSettings

    access = fleet_access(args)
    host, port = access.host_port
    settings = MqttSettings(
        host=host,
        port=port,
        client_id=f"fleet-manager-{os.getpid()}",
        username=access.username,
        password=access.password.get_secret_value() if access.password else None,
        tls_ca=str(access.tls_ca) if access.tls_ca else None,
        protocol=access.protocol,
        # It reads only device statuses: a device's huge retained message never reaches it whole.
        max_packet_bytes=MAX_PACKET_BYTES,
    )
    return MqttConnection(settings)


def start_or_raise(connection: MqttConnection, args: argparse.Namespace) -> None:
    """Connect, or raise TransportError naming the broker and why it refused."""
    from edgecascade.shared.errors import TransportError

    if not connection.start(wait_s=5):
        connection.stop()
        raise TransportError(
            f"cannot reach the broker at {args.broker} ({connection.refused_reason or 'no answer'})"
        )


def connect_manager(args: argparse.Namespace) -> FleetManager:
    """The signing FleetManager, connected, with the retained statuses already in."""
    from edgecascade.cloud.fleet.manager import FleetManager
    from edgecascade.shared.manifest import load_private_key

    connection = fleet_connection(args)
    manager = FleetManager(
        connection,
        args.fleet,
        load_private_key(args.key),
        args.state_dir,
        artifacts_dir=getattr(args, "artifacts_dir", None),
    )
    start_or_raise(connection, args)
    manager.board.wait_settled(0.5)
    return manager


def follow(
    manager: FleetManager,
    push_id: str,
    devices: list[str],
    timeout: float,
    kind: str = "model",
    model: str | None = None,
) -> int:
    """Print each device's progress until it answers for `push_id` (in its status of `model`);
    0 if all became active or rolled back. What devices sent is printed through `shown()`
    (escaped, cut): it is theirs to write, not ours to trust."""
    from edgecascade.cloud.fleet.status_board import REASON_CHARS, progress_text
    from edgecascade.cloud.fleet.terminal_text import shown

    listed = ", ".join(shown(d) for d in devices)
    print(f"sent to {len(devices)} device(s): {listed or '(none known yet)'}")

    def show(device: str, st: Any) -> None:
        if st is None:
            print(f"  {shown(device):20s} waiting")
        else:
            pct = progress_text(st.progress) if st.state == "downloading" else None
            why = f": {shown(st.reason, REASON_CHARS)}" if st.reason else ""
            print(f"  {shown(device):20s} {st.state}{f' {pct}' if pct else ''}{why}")

    board = manager.board
    final = board.wait_for(push_id, devices, timeout, on_change=show, kind=kind, model=model)
    groups: dict[str, list[str]] = {}
    for device, st in final.items():
        if st is not None and st.push_id == push_id:
            state, why = st.state, st.reason
        elif st is not None and st.last_refusal:  # it refused the manifest unread: it says why
            state, why = "no answer", f"last refused manifest: {st.last_refusal}"
        else:  # what it sent may have been ignored as malformed: say so
            malformed = board.malformed_of(device)
            state, why = "no answer", malformed and f"a status it sent was ignored: {malformed}"
        name = shown(device)
        groups.setdefault(state, []).append(f"{name} ({shown(why, REASON_CHARS)})" if why else name)
    for state, names in sorted(groups.items()):
        print(f"{state}: {len(names)}: {', '.join(names)}")
    ok = {"active", "rolled_back"}
    return (
        0 if all(st is not None and st.push_id == push_id and st.state in ok for st in final.values()) else 1
    )
