"""Forms validate input (bad input → a form error, never a 500); services enforce the business rules."""

from __future__ import annotations

import datetime as dt
import re

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.db.models import QuerySet
from django.utils import timezone

from sites.models import ServingEndpoint
from tenants import services
from tenants.choices import MIG_PROFILES, TenantRole, TenantStatus
from tenants.models import AttributionRule, CapacityRequest, PricePlan, PriceRate, Tenant

DATE = forms.DateInput(attrs={"type": "date"})
DATETIME = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
MAX_TOKENS_PER_MONTH = 10**15  # a quadrillion tokens a month is past any real demand: treat more as a typo


class PasswordPairMixin(forms.Form):
    password1 = forms.CharField(label="Password", strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                                help_text=password_validation.password_validators_help_text_html())
    password2 = forms.CharField(label="Password again", strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    def password_user(self):
        """An unsaved user with the submitted attributes, for UserAttributeSimilarityValidator."""
        raise NotImplementedError

    def clean(self) -> dict:
        data = super().clean()
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", "The two passwords differ.")
        elif p1:
            try:
                password_validation.validate_password(p1, user=self.password_user())
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data


class SignupForm(PasswordPairMixin):
    org_name = forms.CharField(label="Organization name", max_length=200)
    full_name = forms.CharField(label="Your name", max_length=200)
    email = forms.EmailField(label="Work email", help_text="You will log in with it; we send a confirmation link.")
    field_order = ["org_name", "full_name", "email", "password1", "password2"]

    def __init__(self, *args, partner, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.partner = partner

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if services.email_taken(email=email):
            raise forms.ValidationError("An account with this email already exists. Log in instead.")
        return email

    def clean_org_name(self) -> str:
        name = self.cleaned_data["org_name"].strip()
        if Tenant.objects.filter(partner=self.partner, name__iexact=name).exists():
            raise forms.ValidationError("An organization with this name is already registered here.")
        return name

    def password_user(self):
        data = self.cleaned_data
        return get_user_model()(username=data.get("email", ""), email=data.get("email", ""),
                                first_name=data.get("full_name", ""))


class AcceptInvitationForm(PasswordPairMixin):
    full_name = forms.CharField(label="Your name", max_length=200)
    field_order = ["full_name", "password1", "password2"]

    def __init__(self, *args, email: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def password_user(self):
        return get_user_model()(username=self.email, email=self.email,
                                first_name=self.cleaned_data.get("full_name", ""))


class CapacityRequestForm(forms.Form):
    KIND_CHOICES = [("gpus", "Whole GPUs"), ("mig", "MIG slices")]

    models_text = forms.CharField(
        label="Models", widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line or comma-separated, e.g. meta-llama/Llama-3.1-70B-Instruct.",
    )
    kind = forms.ChoiceField(label="Capacity", choices=KIND_CHOICES, widget=forms.RadioSelect, initial="gpus")
    gpu_count = forms.IntegerField(label="Whole GPUs", required=False, min_value=1, max_value=100_000)
    mig_profile = forms.ChoiceField(label="MIG profile", required=False,
                                    choices=[("", "—")] + [(p, p) for p in MIG_PROFILES])
    mig_count = forms.IntegerField(label="MIG slices", required=False, min_value=1, max_value=700_000)
    expected_tokens_per_month = forms.IntegerField(min_value=1, max_value=MAX_TOKENS_PER_MONTH,
                                                   help_text="Input + output tokens you expect to serve a month.")
    start_date = forms.DateField(widget=DATE)
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def clean_models_text(self) -> list[str]:
        names = [n.strip() for n in re.split(r"[,\n]", self.cleaned_data["models_text"]) if n.strip()]
        if not names:
            raise forms.ValidationError("Name at least one model.")
        if any(len(n) > 200 for n in names):
            raise forms.ValidationError("Model names are at most 200 characters.")
        return names

    def clean_start_date(self) -> dt.date:
        start = self.cleaned_data["start_date"]
        if start < timezone.localdate():
            raise forms.ValidationError("The start date cannot be in the past.")
        return start

    def clean(self) -> dict:
        data = super().clean()
        if data.get("kind") == "gpus":
            if not data.get("gpu_count") and "gpu_count" not in self.errors:
                self.add_error("gpu_count", "How many GPUs?")
            data["mig_profile"], data["mig_count"] = "", None
        elif data.get("kind") == "mig":
            if not data.get("mig_profile"):
                self.add_error("mig_profile", "Choose a MIG profile.")
            if not data.get("mig_count") and "mig_count" not in self.errors:
                self.add_error("mig_count", "How many slices?")
            data["gpu_count"] = None
        return data


class ReasonForm(forms.Form):
    reason = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


class DecisionForm(ReasonForm):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])

    def clean(self) -> dict:
        data = super().clean()
        if data.get("decision") == "reject" and not (data.get("reason") or "").strip():
            self.add_error("reason", "Give the reason for rejecting; the tenant will see it.")
        return data


class PricePlanAssignForm(forms.Form):
    price_plan = forms.ModelChoiceField(queryset=PricePlan.objects.none(), required=False, empty_label="No plan")

    def __init__(self, *args, tenant: Tenant, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["price_plan"].queryset = PricePlan.objects.filter(partner_id=tenant.partner_id)
        self.fields["price_plan"].initial = tenant.price_plan_id


class AllocationForm(forms.Form):
    gpu = forms.ModelChoiceField(label="GPU", queryset=None, required=False)
    mig_device = forms.ModelChoiceField(label="MIG device", queryset=None, required=False)
    endpoint = forms.ModelChoiceField(label="Serving endpoint", queryset=None, required=False)
    capacity_request = forms.ModelChoiceField(label="For request", queryset=None, required=False)
    starts_at = forms.DateTimeField(required=False, widget=DATETIME, help_text="UTC; empty = now.")
    ends_at = forms.DateTimeField(required=False, widget=DATETIME, help_text="UTC; empty = open-ended.")
    note = forms.CharField(required=False, max_length=300)

    def __init__(self, *args, gpus: QuerySet, mig_devices: QuerySet, endpoints: QuerySet,
                 requests: QuerySet[CapacityRequest], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["gpu"].queryset = gpus
        self.fields["mig_device"].queryset = mig_devices
        self.fields["endpoint"].queryset = endpoints
        self.fields["capacity_request"].queryset = requests

    def clean(self) -> dict:
        data = super().clean()
        chosen = [name for name in ("gpu", "mig_device", "endpoint") if data.get(name)]
        if len(chosen) != 1 and not any(name in self.errors for name in ("gpu", "mig_device", "endpoint")):
            raise forms.ValidationError("Choose exactly one of: a GPU, a MIG device, a serving endpoint.")
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            self.add_error("ends_at", "An allocation must end after it starts.")
        return data


class AttributionRuleForm(forms.ModelForm):
    class Meta:
        model = AttributionRule
        fields = ["endpoint", "label", "value", "tenant", "effective_from", "effective_to"]
        widgets = {"effective_from": DATETIME, "effective_to": DATETIME}
        help_texts = {"effective_from": "UTC; empty = now.", "effective_to": "UTC; empty = until changed."}

    def __init__(self, *args, endpoints: QuerySet[ServingEndpoint], tenants: QuerySet[Tenant], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = endpoints
        self.fields["tenant"].queryset = tenants.filter(status=TenantStatus.APPROVED)
        self.fields["effective_from"].required = False

    def clean(self) -> dict:
        data = super().clean()
        if data.get("label") and not data.get("value"):
            self.add_error("value", "Give the label's value.")
        if data.get("value") and not data.get("label"):
            self.add_error("label", "Give the label the value belongs to.")
        return data

    def validate_constraints(self, exclude=None) -> None:
        # The service runs full_clean (with constraints) after defaulting effective_from; skipping it here keeps
        # an empty effective_from from tripping the "ends after it starts" check.
        return None


class ApiKeyForm(forms.Form):
    EXPIRY_CHOICES = [("30", "30 days"), ("90", "90 days"), ("365", "1 year"), ("", "Never")]
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. billing-export.")
    expires_in_days = forms.ChoiceField(label="Expires in", choices=EXPIRY_CHOICES, initial="90", required=False)

    def expires_at(self) -> dt.datetime | None:
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + dt.timedelta(days=int(days)) if days else None


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=TenantRole.choices, initial=TenantRole.MEMBER)


class PricePlanForm(forms.ModelForm):
    class Meta:
        model = PricePlan
        fields = ["partner", "name", "currency", "effective_from", "effective_to", "notes"]
        widgets = {"effective_from": DATE, "effective_to": DATE, "notes": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, partners: QuerySet, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["partner"].queryset = partners
        if self.instance.pk:
            self.fields.pop("partner")  # a plan never moves between partners
        elif partners.count() == 1:
            self.fields["partner"].initial = partners.first()


class PriceRateForm(forms.ModelForm):
    class Meta:
        model = PriceRate
        fields = ["model", "input_price_per_mtok", "output_price_per_mtok"]


PriceRateFormSet = forms.inlineformset_factory(
    PricePlan, PriceRate, form=PriceRateForm, extra=3, can_delete=True, min_num=1, validate_min=True,
)
