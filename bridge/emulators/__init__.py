"""Local stand-ins for the providers' realtime servers, speaking their real wire protocols.

They exist because tests (and people without keys) can't reach OpenAI or Google from here;
``bridge emulate openai`` runs one on its own.
"""
