"""Lifeline's wire, typed: every request body, query, socket payload, Kafka payload,
answer, ack and server event as a pydantic model. The doors validate with these and
the OpenAPI and AsyncAPI documents are generated from them."""
