"""The admin console: server-rendered pages at `/ui/` on the admin listener (`[admin] ui`).

session.py signs the console's sessions and its forms' CSRF tokens (pure); pages.py gathers
what each page shows and makes its writes through the admin API's own functions; app.py holds
the routes, the session guard and the headers. Templates and the one script and stylesheet
are package data (templates/, static/).
"""
