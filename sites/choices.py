from django.db import models


class PartnerRole(models.TextChoices):
    OWNER = "owner", "Owner"
    OPERATOR = "operator", "Operator"
    VIEWER = "viewer", "Viewer"


WRITE_ROLES = (PartnerRole.OWNER, PartnerRole.OPERATOR)


class SiteStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    POWER_SECURED = "power_secured", "Power secured"
    RACKED = "racked", "Racked"
    BURN_IN = "burn_in", "Burn-in"
    LIVE = "live", "Live"

    @classmethod
    def colors(cls) -> dict[str, str]:
        return {"planned": "grey", "power_secured": "blue", "racked": "indigo", "burn_in": "orange", "live": "green"}


class NodeStatus(models.TextChoices):
    PENDING = "pending", "Pending first report"
    ONLINE = "online", "Online"
    STALE = "stale", "Stale"
    UNHEALTHY = "unhealthy", "Unhealthy"
    MAINTENANCE = "maintenance", "Maintenance"
    RETIRED = "retired", "Retired"


class GpuStatus(models.TextChoices):
    OK = "ok", "OK"
    UNHEALTHY = "unhealthy", "Unhealthy"
    LOST = "lost", "Lost"


class Engine(models.TextChoices):
    AUTO = "auto", "Auto-detect"
    VLLM = "vllm", "vLLM"
    TGI = "tgi", "Text Generation Inference"
    SGLANG = "sglang", "SGLang"
    TRTLLM = "trtllm", "TensorRT-LLM (trtllm-serve)"
    TRITON = "triton", "Triton (TensorRT-LLM backend)"
    NIM = "nim", "NVIDIA NIM"
    LLAMACPP = "llamacpp", "llama.cpp"
    LITELLM = "litellm", "LiteLLM gateway"


class EndpointHealth(models.TextChoices):
    UNKNOWN = "unknown", "Not polled yet"
    HEALTHY = "healthy", "Healthy"
    UNHEALTHY = "unhealthy", "Unhealthy"


class MilestoneKind(models.TextChoices):
    """The steps of a site's 90-day build-out, in the order they normally happen."""

    POWER_SECURED = "power_secured", "Power secured"
    HARDWARE_DELIVERED = "hardware_delivered", "Hardware delivered"
    RACKED = "racked", "Racked and powered"
    NETWORK = "network", "Network up"
    BURN_IN = "burn_in", "Burn-in passed"
    FIRST_TOKENS = "first_tokens", "First tokens served (live)"
