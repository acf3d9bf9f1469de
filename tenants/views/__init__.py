"""Tenant pages: public signup (signup.py), the tenant's own pages (tenant.py), partner staff pages (partner.py)."""
