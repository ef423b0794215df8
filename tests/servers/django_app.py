"""Django's runserver (no autoreload), settings in this file."""
import os
import sys

import django
from django.conf import settings
from django.http import HttpResponse
from django.urls import path


def hello(request):  # type: ignore[no-untyped-def]
    return HttpResponse(f"hello world, start with cluster {os.getpid()}\n")


settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, SECRET_KEY="test",
                   MIDDLEWARE=[], INSTALLED_APPS=[], LOGGING_CONFIG=None)
urlpatterns = [path("", hello)]
django.setup()
from django.core.management import execute_from_command_line  # noqa: E402

execute_from_command_line([sys.argv[0], "runserver", "--noreload", "--nothreading",
                           f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ['PORT']}"])
