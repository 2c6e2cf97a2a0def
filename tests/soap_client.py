"""Treserva's side of the SOAP endpoint, played by zeep from the hub's own WSDL.

Run by tests/contract.rs as `python soap_client.py HUB_URL TOKEN PROVIDER`. It builds its
calls from the WSDL's types only (no hand-written XML), sends one valid decision and two
refused ones, and prints one line per call:

    accepted <MessageId> <OrderId>
    fault <faultcode> <hub code> <message_id or -> <faultstring>

Any surprise is an AssertionError and a non-zero exit.
"""

import datetime
import sys

import requests
import zeep
from zeep.exceptions import Fault
from zeep.transports import Transport

HUB_NS = "urn:carehub:hub:1"


def client(base, token):
    session = requests.Session()
    session.trust_env = False  # the hub is on 127.0.0.1; no proxy in between
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    wsdl = f"{base}/v1/systems/treserva/messages?wsdl"
    return zeep.Client(wsdl, transport=Transport(session=session, timeout=30))


def element_names(xsd_type):
    return [name for name, _ in xsd_type.elements]


def decision(decision_id, pnr, provider):
    return {
        "Id": decision_id,
        "Klient": {"Personnr": pnr},
        "Handlaggare": "anna.l",
        "Utforare": {"Orgnr": provider},
        "Period": {"From": datetime.date(2026, 11, 1), "Tom": datetime.date(2027, 10, 31)},
        "Insatser": {"Insats": [{"Kod": "HT-SERV", "Tid": 480}, {"Kod": "HT-PO", "Tid": 1800}]},
    }


def expect_fault(call, faultcode, code):
    try:
        call()
    except Fault as fault:
        assert fault.code == faultcode, f"faultcode {fault.code!r}, wanted {faultcode!r}"
        assert fault.message, "the fault has no faultstring"
        assert fault.detail is not None, "the fault has no detail"
        error = fault.detail.find(f"{{{HUB_NS}}}error")
        assert error is not None, "no hub:error in the detail"
        got = error.findtext(f"{{{HUB_NS}}}code")
        assert got == code, f"code {got!r}, wanted {code!r}"
        message_id = error.findtext(f"{{{HUB_NS}}}message_id") or "-"
        print("fault", fault.code, got, message_id, fault.message)
        return message_id
    raise AssertionError(f"no fault for a call that should give {code}")


def main():
    base, token, provider = sys.argv[1:4]
    hub = client(base, token)

    # The WSDL gives RegistreraBeslut a real type, read from the mapping file.
    request = hub.get_element("{urn:carehub:vendor:treserva:1}RegistreraBeslut")
    assert element_names(request.type) == ["Beslut"], element_names(request.type)
    beslut = dict(request.type.elements)["Beslut"].type
    names = element_names(beslut)
    for wanted in ["Id", "Klient", "Handlaggare", "Utforare", "Period", "Beslutsdatum", "Insatser"]:
        assert wanted in names, f"Beslut lacks {wanted}: {names}"
    insats = dict(dict(beslut.elements)["Insatser"].type.elements)["Insats"]
    assert insats.max_occurs == "unbounded", insats.max_occurs

    answer = hub.service.RegistreraBeslut(Beslut=decision("ZEEP-1", "193601016987", provider))
    assert answer.Status == "accepted", answer
    assert answer.OrderId, answer
    assert isinstance(answer.MessageId, int), answer
    print("accepted", answer.MessageId, answer.OrderId)

    logged = expect_fault(
        lambda: hub.service.RegistreraBeslut(Beslut=decision("ZEEP-2", "193601016988", provider)),
        "soap:Client",
        "INVALID_PERSONAL_IDENTITY_NUMBER",
    )
    assert logged != "-", "a refused decision is logged and named"

    anonymous = client(base, None)
    expect_fault(
        lambda: anonymous.service.RegistreraBeslut(Beslut=decision("ZEEP-3", "193601016987", provider)),
        "soap:Client",
        "UNAUTHENTICATED",
    )


if __name__ == "__main__":
    main()
