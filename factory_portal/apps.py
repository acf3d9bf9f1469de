from django.apps import AppConfig


class FactoryPortalConfig(AppConfig):
    name = "factory_portal"
    verbose_name = "Factory Portal"
