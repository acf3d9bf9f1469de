from __future__ import annotations

import json

from django import forms
from django.db.models import QuerySet

from sites.models import Gpu, Node, Partner, ServingEndpoint, Site, SiteMilestone


class SiteForm(forms.ModelForm):
    baseline_engine_versions = forms.JSONField(
        required=False,
        label="Serving-engine versions",
        help_text='Engine → version as JSON, e.g. {"vllm": "0.8.5"}.',
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    class Meta:
        model = Site
        fields = [
            "partner", "name", "country", "city", "time_zone", "status", "contract_date", "target_live_date",
            "power_capacity_kw", "pue", "electricity_price_per_kwh", "currency", "capex_per_gpu",
            "amortization_months", "opex_per_gpu_hour", "utilization_target_pct", "gpu_poll_interval_s",
            "baseline_driver_version", "baseline_cuda_version", "baseline_trtllm_version", "baseline_nemo_version",
            "baseline_engine_versions",
        ]
        widgets = {
            "contract_date": forms.DateInput(attrs={"type": "date"}),
            "target_live_date": forms.DateInput(attrs={"type": "date"}),
        }

    def __init__(self, *args, partners: QuerySet[Partner], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["partner"].queryset = partners
        self.fields["target_live_date"].required = False
        if self.instance.pk:
            # A site never moves between partners.
            self.fields.pop("partner")
        elif partners.count() == 1:
            self.fields["partner"].initial = partners.first()

    def clean_baseline_engine_versions(self) -> dict:
        value = self.cleaned_data.get("baseline_engine_versions")
        if value in (None, ""):
            return {}
        if isinstance(value, str):
            value = json.loads(value)
        return value


class NodeForm(forms.ModelForm):
    class Meta:
        model = Node
        fields = ["hostname", "status", "driver_version", "cuda_driver_version"]


class GpuForm(forms.ModelForm):
    class Meta:
        model = Gpu
        fields = [
            "node", "uuid", "index", "name", "memory_total_bytes", "serial", "pci_bus_id", "driver_version",
            "cuda_driver_version", "mig_mode",
        ]

    def __init__(self, *args, site: Site, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["node"].queryset = Node.objects.filter(site=site)


class EndpointForm(forms.ModelForm):
    bearer_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Sent as `Authorization: Bearer …` when scraping. Stored encrypted and never shown again; "
        "leave empty to keep the current one.",
    )
    clear_bearer_token = forms.BooleanField(required=False, label="Remove the stored bearer token")

    class Meta:
        model = ServingEndpoint
        fields = ["name", "engine", "metrics_url", "node", "served_model", "enabled"]
        widgets = {"metrics_url": forms.URLInput(attrs={"placeholder": "http://10.0.0.5:8000/metrics"})}

    def __init__(self, *args, site: Site, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["node"].queryset = Node.objects.filter(site=site)
        self.fields["node"].required = False


class MilestoneForm(forms.ModelForm):
    class Meta:
        model = SiteMilestone
        fields = ["name", "planned_date", "done_date"]
        widgets = {
            "planned_date": forms.DateInput(attrs={"type": "date"}),
            "done_date": forms.DateInput(attrs={"type": "date"}),
        }
