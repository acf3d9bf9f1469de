"""GPU telemetry API: the agent push endpoint (node token), agent tokens and collector settings (users)."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from sites.models import Node
from sites.selectors import user_can_write_partner
from telemetry import gpu_selectors, gpu_services
from telemetry.api.gpu_serializers import AgentTokenSerializer, NodeGpuCollectorSerializer, NodeReportSerializer
from telemetry.clock import node_report_from_push
from telemetry.collectors.nvml import SOURCE_AGENT
from telemetry.models import GpuCollectorMode


class NodeTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer fpn_...` → the node the token was issued for (request.auth)."""

    def authenticate(self, request: Request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != b"bearer":
            return None
        if len(header) != 2:
            raise AuthenticationFailed("Give the node token as `Authorization: Bearer fpn_...`.")
        node = gpu_selectors.node_for_agent_token(token=header[1].decode(errors="replace"))
        if node is None:
            raise AuthenticationFailed("Unknown or replaced node token.")
        return AnonymousUser(), node

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="node-agent"'


class IsNodeAgent(permissions.BasePermission):
    message = "A node token is required."

    def has_permission(self, request: Request, view) -> bool:
        return isinstance(request.auth, Node)


class NodeThrottle(ScopedRateThrottle):
    """The `ingest` rate per node, not per address (many agents may share one NAT address)."""

    def get_cache_key(self, request: Request, view) -> str | None:
        if isinstance(request.auth, Node):
            return self.cache_format % {"scope": self.scope, "ident": f"node-{request.auth.pk}"}
        return super().get_cache_key(request, view)


class GpuReadingsIngestView(APIView):
    """POST one collection cycle of the node the token belongs to."""

    authentication_classes = [NodeTokenAuthentication]
    permission_classes = [IsNodeAgent]
    throttle_classes = [NodeThrottle]
    throttle_scope = "ingest"

    @extend_schema(request=NodeReportSerializer, responses={201: None})
    def post(self, request: Request) -> Response:
        received_at = timezone.now()  # the server's clock, the reference for the node's (telemetry/clock.py)
        serializer = NodeReportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = {**serializer.validated_data, "source": SOURCE_AGENT}
        node: Node = request.auth
        report = node_report_from_push(node_id=node.pk, data=data, received_at=received_at)
        try:
            result = gpu_services.gpu_report_ingest(node_id=node.pk, report=report)
        except gpu_services.GpuOwnershipError as exc:
            raise PermissionDenied(exc.message) from exc
        return Response({"node": node.pk, "samples_written": result.samples_written,
                         "gpus_created": result.gpus_created, "gpus_lost": result.gpus_lost,
                         "node_status": result.node_status}, status=status.HTTP_201_CREATED)


def _writable_node(request: Request, pk: int) -> Node:
    node = get_object_or_404(Node.objects.visible_to(request.user), pk=pk)
    if request.method not in permissions.SAFE_METHODS and not user_can_write_partner(
            user=request.user, partner_id=node.site.partner_id):
        raise PermissionDenied("Your role at this partner is read-only.")
    return node


class NodeAgentTokenView(APIView):
    """POST: issue a new push token for the node's agent (the previous one stops working). Shown once."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses={201: AgentTokenSerializer})
    def post(self, request: Request, pk: int) -> Response:
        node = _writable_node(request, pk)
        token = gpu_services.node_agent_token_issue(node=node)
        return Response({"node": node.pk, "hostname": node.hostname, "token": token}, status=status.HTTP_201_CREATED)


class NodeGpuCollectorView(APIView):
    """GET/PUT how the node's GPUs are read: `nvml` (node worker), `dcgm` (exporter URL) or `agent` (push)."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=NodeGpuCollectorSerializer)
    def get(self, request: Request, pk: int) -> Response:
        node = _writable_node(request, pk)
        collector = gpu_selectors.node_gpu_collector(node=node)
        return Response({"node": node.pk, "mode": collector.mode if collector else GpuCollectorMode.NVML_WORKER,
                         "dcgm_url": collector.dcgm_url if collector else ""})

    @extend_schema(request=NodeGpuCollectorSerializer, responses=NodeGpuCollectorSerializer)
    def put(self, request: Request, pk: int) -> Response:
        node = _writable_node(request, pk)
        serializer = NodeGpuCollectorSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            collector = gpu_services.node_gpu_collector_set(node=node, **serializer.validated_data)
        except DjangoValidationError as exc:
            return Response(exc.message_dict, status=status.HTTP_400_BAD_REQUEST)
        return Response(NodeGpuCollectorSerializer(collector).data)
