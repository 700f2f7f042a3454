from starpod_session import Channel


def test_create_and_get(manager):
    sid = manager.create_session(Channel.MAIN, "k")
    assert manager.get_session(sid).channel == "main"
