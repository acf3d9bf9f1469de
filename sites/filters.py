import django_filters

from sites.models import Gpu, Node, ServingEndpoint, Site


class SiteFilterSet(django_filters.FilterSet):
    class Meta:
        model = Site
        fields = ["partner", "status", "country"]


class NodeFilterSet(django_filters.FilterSet):
    site = django_filters.CharFilter(field_name="site__slug", label="Site slug")

    class Meta:
        model = Node
        fields = ["site", "status"]


class GpuFilterSet(django_filters.FilterSet):
    site = django_filters.CharFilter(field_name="node__site__slug", label="Site slug")

    class Meta:
        model = Gpu
        fields = ["site", "node", "status", "mig_mode", "uuid"]


class ServingEndpointFilterSet(django_filters.FilterSet):
    site = django_filters.CharFilter(field_name="site__slug", label="Site slug")

    class Meta:
        model = ServingEndpoint
        fields = ["site", "engine", "health", "enabled"]
