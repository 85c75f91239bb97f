"""Namespace for project plugins: ``projects/<Name>/<pkg>`` installs as ``flexcore.projects.<pkg>``.

Projects are never imported automatically; load one with ``--plugin
flexcore.projects.<pkg>`` or an ``import flexcore.projects.<pkg>`` line in a gin file.
"""
