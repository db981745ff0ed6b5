"""The employee's side of the agent: tray icon, Tk dialogs, and their Windows pieces.

`zgoda tray` (`agent.ui.cli`) starts `agent.ui.app.TrayApp`; its threading is
described there. Texts live in `agent.ui.strings`, windows in
`agent.ui.dialogs`, the icon in `agent.ui.tray`, platform pieces behind
`agent.ui.desktop.Desktop`.
"""
