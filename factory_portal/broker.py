"""kombu's filesystem transport with an atomic put, for the embedded broker of `make run`.

kombu 5.7's `filesystem` Channel creates the message file under its final name and then writes it; a consumer
listing the folder in between moves and reads an empty file and the worker dies on a JSONDecodeError. Here the
message is written under a name no queue matches and renamed into place (rename is atomic on one filesystem),
so a consumer only ever sees complete messages.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs) -> None:
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.partial")  # "._….partial": matches no queue
        try:
            with open(partial, "wb", buffering=0) as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def install() -> None:
    """Make `filesystem://` URLs use this transport."""
    TRANSPORT_ALIASES["filesystem"] = "factory_portal.broker:Transport"
