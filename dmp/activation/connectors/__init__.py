"""One small class per platform, found through this registry by a destination's kind."""

from dmp.activation.base import Connector
from dmp.activation.connectors.file import FileExport
from dmp.activation.connectors.meta import MetaAudiences
from dmp.activation.connectors.ttd import TradeDesk
from dmp.activation.connectors.webhook import Webhook
from dmp.activation.connectors.xandr import XandrSegments

CONNECTORS: dict[str, type[Connector]] = {
    "ttd": TradeDesk,
    "meta": MetaAudiences,
    "xandr": XandrSegments,
    "webhook": Webhook,
    "file": FileExport,
}
