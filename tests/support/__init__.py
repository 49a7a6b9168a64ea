"""Support code for the tests: fake upstreams, servers, clients, gateways, stacks."""
