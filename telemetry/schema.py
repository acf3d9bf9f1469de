"""OpenAPI description of the node-agent token authentication (imported in TelemetryConfig.ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class NodeTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "telemetry.api.gpu_views.NodeTokenAuthentication"
    name = "nodeAgentToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A node agent token `fpn_...` (shown once) as `Authorization: Bearer fpn_...`.",
        }
