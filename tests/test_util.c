/* Unit tests for util: util_format cuts a text that does not fit visibly,
 * at a word or a whole UTF-8 character, and never overruns. */
#include "unit.h"
#include "util.h"

#define E UTIL_ELLIPSIS

/* util_format(buf of len bytes, "%s", in) gives want. */
static void check_cut(size_t len, const char *in, const char *want)
{
    char buf[128];

    REQUIRE(len <= sizeof(buf) - 1);
    memset(buf, 'Z', sizeof(buf));
    util_format(buf, len, "%s", in);
    CHECK_STR(buf, want);
    CHECK(buf[len] == 'Z'); /* nothing written past len */
}

static void test_fits(void)
{
    check_cut(6, "abcde", "abcde");
    check_cut(32, "", "");
    check_cut(32, "caf\xc3\xa9", "caf\xc3\xa9");
}

static void test_cut_at_a_word(void)
{
    /* the report that asked for this: "...retried when the endpoint answ" */
    check_cut(33, "not counted; retried when the endpoint answers", "not counted; retried when the" E);
    check_cut(32, "not counted; retried when the endpoint answers", "not counted; retried when" E);
    /* the cut falls on a space: the word before it stays whole */
    check_cut(11, "abcdef ghij", "abcdef" E);
    /* spaces before the cut go too */
    check_cut(12, "abc    defghij", "abc" E);
    /* one byte too many is a cut too */
    check_cut(6, "ab cde", "ab" E);
    check_cut(5, "ab cd", "a" E);
}

static void test_cut_inside_a_long_word(void)
{
#define A24 "aaaaaaaaaaaaaaaaaaaaaaaa"
    static const char a40[] = A24 "aaaaaaaaaaaaaaaa";

    CHECK_INT(strlen(A24), 24);
    CHECK_INT(strlen(a40), 40);

    /* no space in the last UTIL_CUT_WORD bytes: cut where it must */
    check_cut(30, "x " A24 A24, "x " A24 E);
    check_cut(30, a40, "aa" A24 E);
}

static void test_cut_at_a_character(void)
{
    /* "é" is 2 bytes: 9 bytes of room hold "ééé" and the ellipsis, not half of the 4th */
    check_cut(10, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", "\xc3\xa9\xc3\xa9\xc3\xa9" E);
    check_cut(11, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", "\xc3\xa9\xc3\xa9\xc3\xa9" E);
    /* a 3-byte character at the cut */
    check_cut(8, "ab\xe2\x80\x94\xe2\x80\x94\xe2\x80\x94", "ab" E);
}

static void test_small_buffers(void)
{
    char buf[4] = "xyz";

    /* room for the ellipsis only */
    check_cut(4, "abcdef", E);
    /* too small for it: a plain cut, still terminated */
    check_cut(3, "abcdef", "ab");
    check_cut(1, "abcdef", "");
    util_format(buf, 0, "%s", "abc");
    CHECK_STR(buf, "xyz");
    util_format(NULL, 10, "%s", "abc"); /* writes nothing, does not crash */
}

TEST_MAIN(CASE(test_fits), CASE(test_cut_at_a_word), CASE(test_cut_inside_a_long_word),
          CASE(test_cut_at_a_character), CASE(test_small_buffers))
