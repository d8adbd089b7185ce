"""Example projects: a template folder plus a seeded data generator each."""
